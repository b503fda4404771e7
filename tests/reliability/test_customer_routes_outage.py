"""The customer routes while Redis is away (contract §3: errors never return a stack
trace): ``GET`` and ``DELETE /v1/customers/{id}`` read and write the store directly, with
no fallback to answer from, so a hung or dead Redis is a prompt 503 in the API's error
shape that names the feature store, with a Retry-After, and a one-line warning in the
server's log rather than a traceback. Once Redis answers again, so do they. Beside them:
a response goes to the broker, not to Redis, so it is still taken; a catalogue change
answers 503 too, though only after its client's socket timeout (5 s)."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from engine.embedded import free_port
from tests.conftest import Running, auth
from tests.reliability._support import (
    api_env,
    api_server,
    kill,
    start_redis,
    stop,
    tail,
    world_topics,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ADMIN = auth("test-admin-key-0001")
READ = auth("test-read-key-00001")
RESPOND = auth("test-respond-key-01")
CUSTOMER = "co-00011"
IMPRESSION = {"action_id": "summer-shoes-10", "customer_id": CUSTOMER, "outcome": "impression"}
BANNER = {"kind": "banner", "name": "probe", "channels": ["web"]}
# The routes wait a few hundred ms for the store; the rest is slack for this shared
# 2-vCPU box. The socket timeout a route used to wait on is 5 s.
PROMPT_S = 1.0


@dataclass
class Server:
    base_url: str
    port: int
    redis_dir: Path
    redis: subprocess.Popen[bytes]
    log: Path


@pytest.fixture
def server(running: Running, tmp_path: Path) -> Iterator[Server]:
    """An API server on a Redis of its own (and the session broker)."""
    port = free_port()
    redis_dir = tmp_path / "redis"
    world_topics(running.endpoints.kafka_brokers, "co.")
    env = api_env(
        running,
        tmp_path / "data",
        NBA_REDIS_URL=f"redis://127.0.0.1:{port}/0",
        NBA_TOPIC_PREFIX="co.",
    )
    log = tmp_path / "serve.log"
    state = Server("", port, redis_dir, start_redis(port, redis_dir), log)
    try:
        with api_server(env, log) as base_url:
            state.base_url = base_url
            yield state
    finally:
        stop(state.redis)


def timed(
    client: httpx.Client, method: str, headers: dict[str, str]
) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    reply = client.request(method, f"/v1/customers/{CUSTOMER}", headers=headers)
    return reply, time.monotonic() - started


def assert_unavailable(reply: httpx.Response, took: float) -> None:
    assert reply.status_code == 503, reply.text
    assert took < PROMPT_S, f"{took:.2f} s"
    error = reply.json()["error"]
    assert error["code"] == "store_unavailable", error
    assert "feature store" in error["message"], error
    assert "Traceback" not in reply.text
    assert int(reply.headers["retry-after"]) >= 1, reply.headers


def until_served(client: httpx.Client, timeout_s: float = 10.0) -> httpx.Response:
    deadline = time.monotonic() + timeout_s
    while True:
        reply = client.get(f"/v1/customers/{CUSTOMER}", headers=READ)
        if reply.status_code == 200 or time.monotonic() > deadline:
            return reply
        time.sleep(0.1)


def assert_quiet_log(server: Server) -> None:
    log = tail(server.log, 200_000)
    assert "Traceback" not in log, log[-3000:]
    assert "feature store" in log  # the one-line warning


def test_customer_routes_answer_503_promptly_while_redis_hangs(server: Server) -> None:
    """SIGSTOP: connections stay open and nothing answers, so nothing fails fast."""
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        assert client.get(f"/v1/customers/{CUSTOMER}", headers=READ).status_code == 200
        server.redis.send_signal(signal.SIGSTOP)
        try:
            view, view_s = timed(client, "GET", READ)
            erase, erase_s = timed(client, "DELETE", ADMIN)
            # a response goes to the broker, not to Redis: still taken at once
            started = time.monotonic()
            response = client.post("/v1/responses", headers=RESPOND, json=IMPRESSION)
            response_s = time.monotonic() - started
            # a catalogue change waits on its own client's socket timeout, then a 503
            change = client.put("/v1/actions/co-probe", headers=ADMIN, json=BANNER)
        finally:
            server.redis.send_signal(signal.SIGCONT)
        assert_unavailable(view, view_s)
        assert_unavailable(erase, erase_s)
        assert response.status_code == 202 and response_s < PROMPT_S, (response.text, response_s)
        assert change.status_code == 503, change.text
        assert change.json()["error"]["code"] == "store_unavailable"
        back = until_served(client)
        assert back.status_code == 200, back.text
        assert client.delete(f"/v1/customers/{CUSTOMER}", headers=ADMIN).status_code == 204
    assert_quiet_log(server)


def test_customer_routes_answer_503_promptly_while_redis_is_down(server: Server) -> None:
    """SIGKILL: connections are refused (the uplift report's read too)."""
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        assert client.get(f"/v1/customers/{CUSTOMER}", headers=READ).status_code == 200
        kill(server.redis)
        view, view_s = timed(client, "GET", READ)
        erase, erase_s = timed(client, "DELETE", ADMIN)
        report = client.get("/v1/reports/uplift", headers=READ)
        server.redis = start_redis(server.port, server.redis_dir)  # same port, empty
        assert report.status_code == 503, report.text
        assert report.json()["error"]["code"] == "store_unavailable"
        assert_unavailable(view, view_s)
        assert_unavailable(erase, erase_s)
        back = until_served(client)
        assert back.status_code == 200, back.text
        assert client.delete(f"/v1/customers/{CUSTOMER}", headers=ADMIN).status_code == 204
    assert_quiet_log(server)
