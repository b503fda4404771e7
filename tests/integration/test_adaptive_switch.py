"""``NBA_ADAPTIVE``: the adaptive layer over the registered model, on by default."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from engine.config import ConfigError, load_settings
from engine.embedded import StackEndpoints, free_port
from tests.conftest import _spawn, _stop, api_env, auth, wait_until_ready

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@contextmanager
def serving(stack: StackEndpoints, data: Path, **extra: str) -> Iterator[str]:
    """An API with an empty model registry of its own."""
    port = free_port()
    server = _spawn(["serve"], api_env(stack, data, port, **extra), data / "serve.log")
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(server, base_url, data / "serve.log")
        yield base_url
    finally:
        _stop(server)


def served_model(base_url: str) -> str:
    """The model a decision names, once the API has settled on one (the adaptive
    layer is restored from the store just after start)."""
    deadline = time.monotonic() + 3
    while True:
        reply = httpx.post(
            f"{base_url}/v1/decisions",
            json={"customer_id": "switch-probe", "channel": "call_centre"},
            headers=auth("test-decide-key-001"),
            timeout=5,
        )
        assert reply.status_code == 200, reply.text
        version = str(reply.json()["model_version"])
        if version != "prior" or time.monotonic() > deadline:
            return version
        time.sleep(0.2)


def test_off_serves_the_registered_model_alone(
    stack: StackEndpoints, tmp_path_factory: pytest.TempPathFactory
) -> None:
    with serving(stack, tmp_path_factory.mktemp("adaptive-on")) as on:
        assert served_model(on) == "adaptive"  # no model registered: the adaptive one decides
    with serving(stack, tmp_path_factory.mktemp("adaptive-off"), NBA_ADAPTIVE="off") as off:
        assert served_model(off) == "prior"  # nor an adaptive layer: the actions' priors
        assert httpx.get(f"{off}/readyz").json()["model"] == "prior"


def test_a_value_that_is_not_on_or_off_is_refused_at_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NBA_ADAPTIVE", "sometimes")
    with pytest.raises(ConfigError, match="NBA_ADAPTIVE"):
        load_settings()
    monkeypatch.setenv("NBA_ADAPTIVE", "off")
    assert load_settings().adaptive is False
