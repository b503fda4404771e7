"""``NBA_ADAPTIVE``: the adaptive layer over the registered model, on by default."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import orjson
import pytest

from engine.config import ConfigError, load_settings
from engine.embedded import StackEndpoints, free_port
from tests.conftest import KEYS, _spawn, _stop, auth

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@contextmanager
def serving(stack: StackEndpoints, data: Path, **extra: str) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "NBA_REDIS_URL": stack.redis_url,
        "NBA_KAFKA_BROKERS": stack.kafka_brokers,
        "NBA_TOPIC_PREFIX": "it.",
        "NBA_PORT": str(port),
        "NBA_API_KEYS": orjson.dumps(KEYS).decode(),
        "NBA_DATA_DIR": str(data),
        "NBA_MODEL_DIR": str(data / "models"),  # empty: no registered model
        **extra,
    }
    server = _spawn(["serve"], env, data / "serve.log")
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, (data / "serve.log").read_text()[-3000:]
            try:
                if httpx.get(f"{base_url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "API did not become ready"
            time.sleep(0.2)
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
