"""Session fixtures: a real Redis and a real Kafka-protocol broker on free loopback
ports, a real stream worker and API server as subprocesses; all stopped at the end."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from engine.embedded import EmbeddedStack, StackEndpoints, free_port

ROOT = Path(__file__).resolve().parent.parent
KEYS = {
    "test-admin-key-0001": ["admin"],
    "test-decide-key-001": ["decide"],
    "test-respond-key-01": ["respond", "ingest"],
    "test-read-key-00001": ["read"],
}
TOPICS = ["it.clickstream", "it.crm", "it.responses", "it.decisions", "it.dlq"]


@dataclass
class Running:
    endpoints: StackEndpoints
    base_url: str
    env: dict[str, str]
    data_dir: Path


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "nba.cli", *args],
        env=env,
        stdout=handle,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        cwd=str(ROOT),
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackEndpoints]:
    data = tmp_path_factory.mktemp("stack")
    with EmbeddedStack(data, topics=TOPICS) as endpoints:
        yield endpoints


@pytest.fixture(scope="session")
def running(stack: StackEndpoints, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """The worker and the API, as an operator would start them against external servers."""

    data = tmp_path_factory.mktemp("nba")
    port = free_port()
    env = api_env(stack, data, port)
    worker = _spawn(["worker"], env, data / "worker.log")
    server = _spawn(["serve"], env, data / "serve.log")
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(server, base_url, data / "serve.log")
        yield Running(stack, base_url, env, data)
    finally:
        _stop(server)
        _stop(worker)


def api_env(stack: StackEndpoints, data: Path, port: int, **extra: str) -> dict[str, str]:
    """The environment of an API or worker started against the test servers."""
    import orjson

    return {
        **os.environ,
        "NBA_REDIS_URL": stack.redis_url,
        "NBA_KAFKA_BROKERS": stack.kafka_brokers,
        "NBA_TOPIC_PREFIX": "it.",
        "NBA_PORT": str(port),
        "NBA_API_KEYS": orjson.dumps(KEYS).decode(),
        "NBA_DATA_DIR": str(data),
        "NBA_MODEL_DIR": str(data / "models"),
        **extra,
    }


def wait_until_ready(server: subprocess.Popen[bytes], base_url: str, log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        if server.poll() is not None:
            raise RuntimeError(log.read_text()[-3000:])
        try:
            if httpx.get(f"{base_url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("API did not become ready")
        time.sleep(0.2)


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
