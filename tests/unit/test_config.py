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
