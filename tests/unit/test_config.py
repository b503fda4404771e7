from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import ConfigError, load_settings, resolve_api_keys


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("NBA_PORT", "eighty"),
        ("NBA_PORT", "70000"),
        ("NBA_REDIS_URL", "http://localhost"),
        ("NBA_KAFKA_BROKERS", "localhost"),
        ("NBA_API_KEYS", "not json"),
        ("NBA_API_KEYS", '{"short": ["decide"]}'),
        ("NBA_API_KEYS", '{"a-long-enough-key": ["fly"]}'),
        ("NBA_API_KEYS", '{"longenoughkey": []}'),
        ("NBA_API_KEYS", "{}"),
        ("NBA_API_KEYS", '["a-long-enough-key"]'),
        ("NBA_HOST", "not a host!"),
        ("NBA_HOST", ""),
        ("NBA_HOST", "-leading-dash.example"),
        ("NBA_CATALOGUE", "/no/such/folder"),
        ("NBA_TOPIC_PREFIX", "bad prefix"),
        ("NBA_LEARN_NEGATIVE_SHARE", "0"),
        ("NBA_LEARN_NEGATIVE_SHARE", "1.5"),
        ("NBA_BACKGROUND_NICE", "-5"),
        ("NBA_BACKGROUND_NICE", "20"),
        ("NBA_WORKER_LOGLEVEL", "chatty"),
    ],
)
def test_a_bad_value_stops_startup_with_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert message.startswith(variable + ":")
    assert "\n" not in message


def test_defaults_follow_the_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NBA_REDIS_URL", "NBA_KAFKA_BROKERS", "NBA_PORT", "NBA_HOST", "NBA_TOPIC_PREFIX"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    assert settings.redis_url is None and settings.kafka_brokers is None
    assert (settings.host, settings.port, settings.topic_prefix) == ("127.0.0.1", 8000, "nba.")
    assert settings.topic("crm") == "nba.crm"


def test_without_keys_an_admin_key_is_generated_once_and_kept(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("NBA_API_KEYS", raising=False)
    monkeypatch.setenv("NBA_DATA_DIR", str(tmp_path))
    settings = load_settings()
    keys, generated = resolve_api_keys(settings)
    assert generated is not None and keys == {generated: sorted(keys[generated])}
    assert "admin" in keys[generated]
    again, second = resolve_api_keys(settings)
    assert second is None and again == keys
    assert (tmp_path / "admin.key").stat().st_mode & 0o077 == 0


def test_an_empty_key_object_is_refused_for_holding_no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBA_API_KEYS", "{}")
    with pytest.raises(ConfigError, match=r"^NBA_API_KEYS: must hold at least one key"):
        load_settings()


def test_a_key_without_scopes_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBA_API_KEYS", '{"longenoughkey": []}')
    with pytest.raises(ConfigError, match=r"^NBA_API_KEYS: every key needs at least one scope"):
        load_settings()


@pytest.mark.parametrize("variable", ["NBA_DATA_DIR", "NBA_MODEL_DIR"])
@pytest.mark.parametrize("below", ["", "sub"])
def test_a_folder_variable_naming_a_file_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variable: str, below: str
) -> None:
    """The file itself, or a folder that would have to be made inside a file."""
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder\n")
    monkeypatch.setenv(variable, str(a_file / below) if below else str(a_file))
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert message.startswith(f"{variable}: ") and "\n" not in message
    assert str(a_file) in message and "is a file" in message


@pytest.mark.parametrize("variable", ["NBA_DATA_DIR", "NBA_MODEL_DIR"])
def test_a_folder_variable_may_name_a_folder_yet_to_be_made(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variable: str
) -> None:
    monkeypatch.setenv(variable, str(tmp_path / "not" / "made" / "yet"))
    settings = load_settings()
    assert getattr(settings, variable.removeprefix("NBA_").lower()) == tmp_path / "not/made/yet"


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "0.0.0.0", "::", "::1", "localhost", "api-1.internal.example.com", "api_1"],
)
def test_a_host_name_or_address_is_accepted(monkeypatch: pytest.MonkeyPatch, host: str) -> None:
    monkeypatch.setenv("NBA_HOST", host)
    assert load_settings().host == host
