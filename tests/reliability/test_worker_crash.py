"""A stream worker SIGKILLed mid-stream and restarted applies every event exactly once
in effect: offsets are committed only after the writes are stored, and the writes are
idempotent on ``event_id`` (contract §4). Its topics have a prefix of their own."""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from feature_store.redis_store import RedisFeatureStore
from tests.conftest import Running
from tests.reliability._support import (
    kill,
    nba,
    produce,
    produce_async,
    stop,
    tail,
    worker_env,
    world_topics,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
PREFIX = "wc."
ACTION = "summer-shoes-10"
FIELD = f"{ACTION}:click"


def response(customer: str, event_id: str) -> tuple[bytes, bytes]:
    value = {
        "event_id": event_id,
        "customer_id": customer,
        "action_id": ACTION,
        "outcome": "click",
        "timestamp": datetime.now(UTC).isoformat(),
    }
    return customer.encode(), orjson.dumps(value)


def counters(redis_url: str, customer: str) -> dict[str, float]:
    async def read() -> dict[str, float]:
        store = RedisFeatureStore.from_url(redis_url)
        try:
            return dict((await store.fetch(customer)).counters)
        finally:
            await store.close()

    return asyncio.run(read())


def clicks(redis_url: str, customer: str) -> float:
    return float(counters(redis_url, customer).get(FIELD, 0.0))


def wait_consuming(
    running: Running, log: Path, process: subprocess.Popen[bytes], timeout_s: float = 90.0
) -> float:
    """Until a probe event through the worker's topic is applied; returns the seconds."""
    probe = f"wc-probe-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    produce(running.endpoints.kafka_brokers, f"{PREFIX}responses", [response(probe, probe)])
    while clicks(running.endpoints.redis_url, probe) < 1:
        assert process.poll() is None, tail(log)
        assert time.monotonic() - started < timeout_s, f"worker not consuming: {tail(log)}"
        time.sleep(0.2)
    return time.monotonic() - started


def test_a_worker_killed_mid_stream_applies_every_event_once(
    running: Running, tmp_path: Path
) -> None:
    brokers = running.endpoints.kafka_brokers
    redis_url = running.endpoints.redis_url
    world_topics(brokers, PREFIX)
    env = worker_env(running, tmp_path / "data", PREFIX)
    log = tmp_path / "worker.log"
    customer = f"wc-{uuid.uuid4().hex[:10]}"
    distinct = [f"wc-e-{customer}-{i}" for i in range(3000)]
    stream: list[str] = []
    for i, event_id in enumerate(distinct):
        stream.append(event_id)
        if i % 10 == 9:  # a duplicate of a recent event, as an at-least-once producer sends
            stream.append(distinct[i - 5])
    assert len(stream) == 3300

    first = nba(["worker"], env, log)
    second = None
    try:
        joined_s = wait_consuming(running, log, first)

        produced = threading.Event()

        def producer() -> None:
            async def go() -> None:
                for start in range(0, len(stream), 110):  # ~30 chunks over ~3 s
                    chunk = [response(customer, e) for e in stream[start : start + 110]]
                    await produce_async(brokers, f"{PREFIX}responses", chunk)
                    await asyncio.sleep(0.1)

            asyncio.run(go())
            produced.set()

        thread = threading.Thread(target=producer, daemon=True)
        thread.start()
        deadline = time.monotonic() + 60
        while (seen := clicks(redis_url, customer)) < 500:
            assert time.monotonic() < deadline, f"only {seen} applied: {tail(log)}"
            time.sleep(0.02)
        kill(first)  # SIGKILL mid-stream: no commit, no goodbye to the group
        at_kill = clicks(redis_url, customer)
        thread.join(60)
        assert produced.is_set()
        assert at_kill < 3000, "the stream was not mid-way at the kill"

        restarted = time.monotonic()
        second = nba(["worker"], env, log)
        deadline = restarted + 90
        while (now := clicks(redis_url, customer)) < 3000:
            assert second.poll() is None, tail(log)
            assert time.monotonic() < deadline, f"{now} of 3000 after the restart: {tail(log)}"
            time.sleep(0.2)
        caught_up_s = time.monotonic() - restarted
        time.sleep(3.0)  # anything redelivered late must not count again
        final = clicks(redis_url, customer)
    finally:
        kill(first)
        if second is not None:
            stop(second)
    assert final == 3000.0, f"{final} clicks for 3000 distinct events ({at_kill} at the kill)"
    print(
        f"\nfirst worker consuming after {joined_s:.1f} s; killed at {at_kill:.0f}/3000; "
        f"restarted worker caught up in {caught_up_s:.1f} s"
    )


def test_the_worker_keeps_its_local_state_under_nba_data_dir(
    running: Running, tmp_path: Path
) -> None:
    world_topics(running.endpoints.kafka_brokers, PREFIX)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    env = worker_env(running, tmp_path / "data", PREFIX)
    log = tmp_path / "worker.log"
    process = nba(["worker"], env, log, cwd=cwd)
    try:
        wait_consuming(running, log, process)
    finally:
        stop(process)
    assert list(cwd.iterdir()) == [], list(cwd.iterdir())


def apply_latency(running: Running, prefix: str, timeout_s: float = 30.0) -> float:
    """Seconds from producing one response event on ``prefix`` to its effect in Redis."""
    customer = f"wc-lat-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    produce(running.endpoints.kafka_brokers, f"{prefix}responses", [response(customer, customer)])
    while clicks(running.endpoints.redis_url, customer) < 1:
        if time.monotonic() - started > timeout_s:
            break
        time.sleep(0.05)
    return time.monotonic() - started


def test_a_worker_of_another_prefix_dying_does_not_stall_this_one(
    running: Running, tmp_path: Path
) -> None:
    """The session worker (prefix it.) keeps its pace while a worker of prefix wc. joins
    and is killed."""
    assert apply_latency(running, "it.") < 10  # the session worker is up
    world_topics(running.endpoints.kafka_brokers, PREFIX)
    log = tmp_path / "worker.log"
    other = nba(["worker"], worker_env(running, tmp_path / "data", PREFIX), log)
    try:
        wait_consuming(running, log, other)
    finally:
        kill(other)
    killed = time.monotonic()
    worst = 0.0
    while time.monotonic() - killed < 12.0:  # past the session timeout and a rebalance
        worst = max(worst, apply_latency(running, "it."))
        time.sleep(0.3)
    assert worst < 1.5, f"the session worker stalled {worst:.1f} s"


def test_the_worker_runs_below_the_api_by_its_configured_nice_on_its_cpus(
    running: Running, tmp_path: Path
) -> None:
    """NBA_BACKGROUND_NICE and NBA_BACKGROUND_CPUS: throughput work gives way to
    decisions (engine.priority), on the CPUs it is given (engine.affinity)."""
    world_topics(running.endpoints.kafka_brokers, PREFIX)
    last = max(os.sched_getaffinity(0))
    env = {
        **worker_env(running, tmp_path / "data", PREFIX),
        "NBA_BACKGROUND_NICE": "4",
        "NBA_BACKGROUND_CPUS": str(last),
    }
    log = tmp_path / "worker.log"
    process = nba(["worker"], env, log)
    try:
        wait_consuming(running, log, process)
        assert os.getpriority(os.PRIO_PROCESS, process.pid) == min(19, os.nice(0) + 4)
        threads = os.listdir(f"/proc/{process.pid}/task")  # its consumer's thread included
        assert len(threads) > 1
        assert {frozenset(os.sched_getaffinity(int(t))) for t in threads} == {frozenset([last])}
    finally:
        stop(process)
