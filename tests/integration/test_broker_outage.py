"""The broker stops answering while the API serves: decisions go on, responses and
decision logs are spooled locally and delivered when the broker returns. None is lost.

The broker is frozen (SIGSTOP) and thawed (SIGCONT) rather than restarted: the embedded
Tansu keeps its topics in memory only, so a restarted one is empty, unlike a Kafka
cluster coming back from an outage."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
import uuid

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from engine.embedded import StackEndpoints, find_broker_binary, free_port
from tests.conftest import KEYS, Running, _spawn, _stop, auth

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ADMIN = auth("test-admin-key-0001")


def start_broker(port: int, log: str) -> subprocess.Popen[bytes]:
    url = f"tcp://127.0.0.1:{port}"
    return subprocess.Popen(
        [
            find_broker_binary(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ],
        stdout=open(log, "ab"),
        stderr=subprocess.STDOUT,
    )


def wait_port(port: int) -> None:
    import socket

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError("broker did not come back")


def consume_all(brokers: str, topic: str, want: set[str], field: str) -> set[str]:
    async def run() -> set[str]:
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=brokers,
            metadata_max_age_ms=500,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        seen: set[str] = set()
        try:
            deadline = time.monotonic() + 60
            while not want <= seen and time.monotonic() < deadline:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    for record in records:
                        seen.add(orjson.loads(record.value)[field])
        finally:
            await consumer.stop()
        return seen

    return asyncio.run(run())


def test_nothing_is_lost_while_the_broker_is_down(
    stack: StackEndpoints, running: Running, tmp_path
) -> None:
    port = free_port()
    broker = start_broker(port, str(tmp_path / "broker.log"))
    wait_port(port)
    api_port = free_port()
    env = {
        **running.env,
        "NBA_KAFKA_BROKERS": f"127.0.0.1:{port}",
        "NBA_PORT": str(api_port),
        "NBA_TOPIC_PREFIX": "sp.",
        "NBA_DATA_DIR": str(tmp_path / "data"),
    }
    server = _spawn(["serve"], env, tmp_path / "serve.log")
    base = f"http://127.0.0.1:{api_port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert KEYS  # the server runs with the suite's keys
        broker.send_signal(signal.SIGSTOP)

        decisions: set[str] = set()
        responses: set[str] = set()
        with httpx.Client(base_url=base, headers=ADMIN, timeout=10) as client:
            for i in range(30):
                started = time.perf_counter()
                reply = client.post(
                    "/v1/decisions", json={"customer_id": f"o-{i}", "channel": "web"}
                )
                assert reply.status_code == 200
                assert time.perf_counter() - started < 1.0
                decisions.add(reply.json()["decision_id"])
                event_id = f"resp-{uuid.uuid4().hex}"
                ack = client.post(
                    "/v1/responses",
                    json={
                        "action_id": "summer-shoes-10",
                        "customer_id": f"o-{i}",
                        "outcome": "impression",
                        "event_id": event_id,
                    },
                )
                assert ack.status_code == 202
                responses.add(event_id)
        metrics = httpx.get(f"{base}/metrics").text
        assert "nba_spooled_records" in metrics

        broker.send_signal(signal.SIGCONT)
        brokers = f"127.0.0.1:{port}"
        assert decisions <= consume_all(brokers, "sp.decisions", decisions, "decision_id")
        assert responses <= consume_all(brokers, "sp.responses", responses, "event_id")
    finally:
        _stop(server)
        broker.send_signal(signal.SIGCONT)
        broker.terminate()
        broker.wait(10)
