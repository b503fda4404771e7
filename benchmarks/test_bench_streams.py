"""Stream worker throughput and freshness (issue: feature store), with the producer in
another process and one worker process applying events to Redis.

Run: ``.venv/bin/python -m pytest benchmarks/test_bench_streams.py -m benchmark -s``
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from benchmarks.conftest import _collected
from engine.embedded import EmbeddedStack, StackEndpoints
from feature_store.ops_store import RedisOpsStore
from streams.lag import consumer_lag
from streams.worker import worker_group

pytestmark = pytest.mark.benchmark
ROOT = Path(__file__).resolve().parent.parent
CATEGORIES = ("shoes", "bags", "electronics", "home", "sports", "beauty")
WINDOWS = ("5m", "1h", "24h", "7d")
LABEL_WINDOW_S = 10.0  # the learner labels a shown action unanswered after this long
TOPICS = ["sb.clickstream", "sb.crm", "sb.responses", "sb.decisions", "sb.dlq"]


def worker_figures(redis_url: str) -> dict[str, float]:
    async def read() -> dict[str, float]:
        ops = RedisOpsStore.from_url(redis_url)
        try:
            workers = await ops.workers()
        finally:
            await ops.close()
        return next(iter(workers.values()), {})

    return asyncio.run(read())


def wait_applied(
    redis_url: str, count: int, timeout_s: float, seen: list[tuple[float, float]] | None = None
) -> float:
    """When the worker's published count reached ``count``; each change of the count is
    added to ``seen`` with the time it was noticed (the worker publishes once a second)."""
    deadline = time.monotonic() + timeout_s
    last = -1.0
    while time.monotonic() < deadline:
        applied = worker_figures(redis_url).get("clickstream|applied", 0)
        if seen is not None and applied != last:
            seen.append((time.monotonic(), applied))
            last = applied
        if applied >= count:
            return time.monotonic()
        time.sleep(0.02)
    raise AssertionError(f"{count} events not applied in {timeout_s} s")


def sustained_rate(seen: list[tuple[float, float]], start: float, end: float) -> float:
    """Events/s between the first and the last published count taken while the worker was
    still busy: a once-a-second count would round a short run's end to the second."""
    busy = [(t, n) for t, n in seen if start < n < end]
    if len(busy) < 2:
        return 0.0
    (t0, n0), (t1, n1) = busy[0], busy[-1]
    return (n1 - n0) / (t1 - t0)


def start_worker(endpoints: StackEndpoints, tmp_path: Path) -> subprocess.Popen[bytes]:
    """``nba worker`` on the benchmark's stack and topic prefix, its log in ``tmp_path``."""
    env = {
        **os.environ,
        "NBA_REDIS_URL": endpoints.redis_url,
        "NBA_KAFKA_BROKERS": endpoints.kafka_brokers,
        "NBA_TOPIC_PREFIX": "sb.",
        "NBA_DATA_DIR": str(tmp_path / "data"),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "nba.cli", "worker"],
        env=env,
        cwd=ROOT,
        stdout=(tmp_path / "worker.log").open("wb"),
        stderr=subprocess.STDOUT,
    )


def test_worker_throughput_and_freshness(tmp_path: Path) -> None:
    with EmbeddedStack(tmp_path / "stack", topics=TOPICS) as endpoints:
        worker = start_worker(endpoints, tmp_path)
        try:
            producer = [
                sys.executable,
                "-m",
                "benchmarks.stream_producer",
                endpoints.kafka_brokers,
                "sb.clickstream",
            ]
            # warm up: the group joins, the scripts load
            subprocess.run([*producer, "2000", "0"], cwd=ROOT, check=True)
            wait_applied(endpoints.redis_url, 2000, 60)
            # throughput: 100,000 events queued as fast as the producer can, timed to applied
            count = 100_000
            started = time.monotonic()
            subprocess.run([*producer, str(count), "0"], cwd=ROOT, check=True)
            produced_s = time.monotonic() - started
            seen: list[tuple[float, float]] = []
            done = wait_applied(endpoints.redis_url, 2000 + count, 300, seen)
            end_to_end = count / (done - started)
            throughput = sustained_rate(seen, 2000, 2000 + count) or end_to_end
            # freshness at a steady 2,000 events/s for 20 s
            subprocess.run([*producer, "40000", "2000"], cwd=ROOT, check=True)
            wait_applied(endpoints.redis_url, 2000 + count + 40_000, 120)
            time.sleep(1.5)  # the next published figures cover the steady run
            figures = worker_figures(endpoints.redis_url)
            lag = asyncio.run(
                consumer_lag(endpoints.kafka_brokers, worker_group("sb."), ["sb.clickstream"])
            )
        finally:
            worker.terminate()
            worker.wait(20)
    _collected["stream_worker_throughput"] = {
        "events_per_s": throughput,
        "events_per_s_end_to_end": end_to_end,
        "target_events_per_s": 10_000,
        "producer_s": produced_s,
        "p50_us": 1e6 / throughput,
        "p90_us": 1e6 / throughput,
        "p99_us": 1e6 / throughput,
    }
    _collected["stream_freshness_at_2000_per_s"] = {
        "p50_us": figures["clickstream|freshness_p50"] * 1e6,
        "p90_us": figures["clickstream|freshness_p50"] * 1e6,
        "p99_us": figures["clickstream|freshness_p99"] * 1e6,
        "target_p99_us": 100_000,
        "lag_after": sum(lag.values()),
    }
    print(_collected["stream_worker_throughput"], _collected["stream_freshness_at_2000_per_s"])
    assert throughput > 0


def decision_records(count: int, run: str) -> list[tuple[bytes, bytes]]:
    """Decision log records shaped as the engine logs a web decision over 100 candidates:
    about 50 features, 100 candidates' scores and shares, three actions shown and learned."""
    rng = random.Random(7)
    actions = [f"a-{i:03d}" for i in range(100)]
    views = {
        a: {"id": a, "kind": "offer", "value": 10.0 + i % 40, "lever": 1.0,
            "channels": ["web"], "category": CATEGORIES[i % len(CATEGORIES)]}
        for i, a in enumerate(actions)
    }  # fmt: skip
    records = []
    for i in range(count):
        features: dict[str, object] = {"segment": "retail", "value_class": "B", "age": 30 + i % 40}
        features |= {f"views_{w}_{c}": float(rng.randrange(6)) for w in WINDOWS for c in CATEGORIES}
        shown = rng.sample(actions, 3)
        record = {
            "decision_id": f"d-{run}{i:08x}-web",
            "timestamp": time.time(),
            "customer_id": f"sb-{i % 500}",
            "channel": "web",
            "placement": "home_hero",
            "context": {"page_category": "shoes", "device": "mobile", "channel": "web"},
            "features": features,
            "group": "treatment",
            "fallback": False,
            "model_version": "bench",
            "policy_version": "bench",
            "candidates": {
                "action_ids": actions,
                "propensity": [rng.random() / 10 for _ in actions],
                "priority": [rng.random() for _ in actions],
                "p_chosen": [0.01] * len(actions),
            },
            "chosen": shown,
            "learn": [{"action_id": a, "view": views[a], "offset": -2.5} for a in shown],
        }
        records.append((record["customer_id"].encode(), orjson.dumps(record)))
    return records


async def produce_records(brokers: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=brokers, linger_ms=5, max_batch_size=262144)
    await producer.start()
    try:
        for key, value in records:
            await producer.send(topic, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


def wait_counted(redis_url: str, count: int, timeout_s: float) -> float:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if worker_figures(redis_url).get("decisions|applied", 0) >= count:
            return time.monotonic()
        time.sleep(0.02)
    raise AssertionError(f"{count} decision records not counted in {timeout_s} s")


def test_worker_cpu_per_decision_record(tmp_path: Path) -> None:
    """The stream worker's CPU for each decision log record it reads (impact counters and
    the adaptive learner's memory of what was shown), learning included: the records are
    queued at once, and the CPU is read after the learner has labelled them all."""
    import psutil

    with EmbeddedStack(tmp_path / "stack", topics=TOPICS) as endpoints:
        worker = start_worker(endpoints, tmp_path)
        try:
            warm, count = 2000, 30_000
            warm_up = decision_records(warm, "w")
            asyncio.run(produce_records(endpoints.kafka_brokers, "sb.decisions", warm_up))
            wait_counted(endpoints.redis_url, warm, 90)
            time.sleep(LABEL_WINDOW_S + 2)  # the warm-up's lessons learned
            records = decision_records(count, "m")
            process = psutil.Process(worker.pid)
            before = sum(process.cpu_times()[:2])
            started = time.monotonic()
            asyncio.run(produce_records(endpoints.kafka_brokers, "sb.decisions", records))
            done = wait_counted(endpoints.redis_url, warm + count, 300)
            counted = sum(process.cpu_times()[:2]) - before
            time.sleep(LABEL_WINDOW_S + 2)  # every record's shown actions learned
            learned = sum(process.cpu_times()[:2]) - before
        finally:
            worker.terminate()
            worker.wait(20)
    figures = {
        "records": count,
        "records_per_s": count / (done - started),
        "cpu_us_per_record_counted": counted / count * 1e6,
        "cpu_us_per_record_learned": learned / count * 1e6,
    }
    us = figures["cpu_us_per_record_learned"]
    _collected["stream_worker_decision_record_cpu"] = {
        **figures,
        "p50_us": us,
        "p90_us": us,
        "p99_us": us,
    }
    print(figures)
    assert figures["records_per_s"] > 0


def test_consuming_the_decision_log_faust_agent_against_the_bulk_reader(tmp_path: Path) -> None:
    """CPU a record to consume the decision log with no work per record, a faust agent
    (as the worker's agents read) against the bulk reader, alternated, two rounds each."""
    count = 20_000
    with EmbeddedStack(tmp_path / "stack", topics=["lc.decisions"]) as endpoints:
        records = decision_records(count, "lc")
        asyncio.run(produce_records(endpoints.kafka_brokers, "lc.decisions", records))
        runs: dict[str, list[dict[str, float]]] = {"faust": [], "bulk": []}
        for _ in range(2):
            for mode in runs:
                command = [sys.executable, "-m", "benchmarks.log_consumption", mode]
                args = [endpoints.kafka_brokers, "lc.decisions", str(count), str(tmp_path / mode)]
                subprocess.run([*command, *args], cwd=ROOT, capture_output=True, timeout=300)
                runs[mode].append(orjson.loads((tmp_path / mode / "result.json").read_bytes()))
                (tmp_path / mode / "result.json").unlink()
    for mode, found in runs.items():
        us = sorted(run["cpu_s"] / run["records"] * 1e6 for run in found)
        rates = [run["records"] / run["wall_s"] for run in found]
        _collected[f"decision_log_consumed_{mode}"] = {
            "cpu_us_per_record": us,
            "records_per_s": rates,
            "p50_us": us[0],
            "p90_us": us[-1],
            "p99_us": us[-1],
        }
        print(mode, {"cpu_us_per_record": us, "records_per_s": rates})
    assert all(run["records"] >= count // 2 for found in runs.values() for run in found)
