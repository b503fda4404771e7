"""Redis dies under load (SIGKILL) and comes back on the same port: every decision is
still a 200 within its budget, from the fallback path while Redis is away, and the API
is back on the feature store within 5 s of Redis, without a restart (contract §3)."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from engine.config import DEMO_CATALOGUE
from engine.embedded import free_port
from rules.catalogue import load_catalogue
from tests.conftest import Running, auth
from tests.reliability._support import (
    api_env,
    api_server,
    kill,
    service_actions,
    start_redis,
    stop,
    world_topics,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ADMIN = auth("test-admin-key-0001")
BUDGET_MS = 20.0  # NBA_DECISION_BUDGET_MS; the demo's channels may set their own
CHANNEL_BUDGET_MS = {
    channel: load_catalogue(DEMO_CATALOGUE).budget_s(channel, BUDGET_MS / 1000) * 1000
    for channel in ("web", "call_centre", "shop", "email")
}
LONGEST_BUDGET_S = max(CHANNEL_BUDGET_MS.values()) / 1000
TOOK_SLACK_MS = 5.0  # the budget bounds the feature read; building the answer comes on top
CLIENT_SLACK_S = 0.180  # at the client: the channel's budget plus this


@dataclass(frozen=True)
class Sample:
    sent: float
    channel: str
    latency: float
    status: int
    fallback: bool | None
    took_ms: float | None
    actions: tuple[tuple[str, str], ...]


class Load:
    """Threads deciding continuously; every answer (or failure) is kept."""

    def __init__(self, base_url: str, threads: int = 2) -> None:
        self.base_url = base_url
        self.samples: list[Sample] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(threads)
        ]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)

    def _run(self, n: int) -> None:
        channels = ["web", "call_centre", "shop", "email"]
        with httpx.Client(base_url=self.base_url, headers=ADMIN, timeout=5) as client:
            i = 0
            while not self._stop.is_set():
                i += 1
                body = {"customer_id": f"ro-{n}-{i % 50}", "channel": channels[i % 4]}
                sent = time.monotonic()
                try:
                    reply = client.post("/v1/decisions", json=body)
                except httpx.HTTPError as exc:
                    with self._lock:
                        self.errors.append(f"{type(exc).__name__} at {sent:.3f}")
                    continue
                latency = time.monotonic() - sent
                data = reply.json() if reply.status_code == 200 else {}
                sample = Sample(
                    sent,
                    body["channel"],
                    latency,
                    reply.status_code,
                    data.get("fallback"),
                    data.get("took_ms"),
                    tuple((a["action_id"], a["kind"]) for a in data.get("actions", [])),
                )
                with self._lock:
                    self.samples.append(sample)

    def since(self, start: float, end: float = float("inf")) -> list[Sample]:
        with self._lock:
            return [s for s in self.samples if start <= s.sent < end]


@dataclass
class Outage:
    base_url: str
    port: int
    redis_dir: Path
    redis: subprocess.Popen[bytes]


@pytest.fixture
def outage(running: Running, tmp_path: Path) -> Iterator[Outage]:
    """An API server on a Redis of its own (and the session broker)."""
    port = free_port()
    redis_dir = tmp_path / "redis"
    world_topics(running.endpoints.kafka_brokers, "ro.")
    env = api_env(
        running,
        tmp_path / "data",
        NBA_REDIS_URL=f"redis://127.0.0.1:{port}/0",
        NBA_TOPIC_PREFIX="ro.",
        NBA_DECISION_BUDGET_MS=str(BUDGET_MS),
    )
    state = Outage("", port, redis_dir, start_redis(port, redis_dir))
    try:
        with api_server(env, tmp_path / "serve.log") as base_url:
            state.base_url = base_url
            yield state
    finally:
        stop(state.redis)


def describe(samples: list[Sample]) -> str:
    if not samples:
        return "no samples"
    took = sorted(s.took_ms or 0.0 for s in samples)
    lat = sorted(s.latency for s in samples)
    return (
        f"{len(samples)} decisions; took_ms p50 {took[len(took) // 2]:.1f} "
        f"p99 {took[int(len(took) * 0.99)]:.1f} max {took[-1]:.1f}; "
        f"client p50 {lat[len(lat) // 2] * 1000:.1f} max {lat[-1] * 1000:.1f} ms; "
        f"fallback {sum(1 for s in samples if s.fallback)}; "
        f"non-200 {sum(1 for s in samples if s.status != 200)}"
    )


def budget_problems(samples: list[Sample]) -> list[str]:
    """Every answer a 200. Server-side took_ms within its channel's budget (+ slack) for
    99% and under 1 s for all; at the client within the budget + 180 ms for all but 0.2%
    (at least 2) and under
    1 s for all. The tolerances absorb this shared 2-vCPU machine: a process that is not
    scheduled, or collects garbage, for tens of ms overruns any budget, because
    asyncio.wait_for cannot preempt a stalled event loop (see the report). A real fault
    (a read waiting on the 5 s socket timeout, a reconnect backoff) breaks every bound."""
    problems = [f"status {s.status}" for s in samples if s.status != 200]
    problems += [f"client {s.latency:.2f} s" for s in samples if s.latency >= 1.0]
    problems += [f"took_ms {s.took_ms}" for s in samples if (s.took_ms or 0) >= 1000]
    slow = [
        round(s.latency * 1000)
        for s in samples
        if s.latency >= CHANNEL_BUDGET_MS[s.channel] / 1000 + CLIENT_SLACK_S
    ]
    if len(slow) > max(2, len(samples) // 500):
        problems.append(f"{len(slow)} of {len(samples)} slow at the client: {slow[:10]}")
    over = [
        s.took_ms
        for s in samples
        if s.took_ms is None or s.took_ms > CHANNEL_BUDGET_MS[s.channel] + TOOK_SLACK_MS
    ]
    if len(over) > max(2, len(samples) // 100):  # scheduler stalls on a shared 2-vCPU box
        problems.append(f"{len(over)} of {len(samples)} over the budget: {over[:10]}")
    return problems


def test_decisions_go_on_while_redis_is_killed_and_recover_without_restart(
    outage: Outage,
) -> None:
    with Load(outage.base_url) as load:
        time.sleep(1.5)
        healthy = load.since(0, time.monotonic())
        assert healthy and all(s.status == 200 and s.fallback is False for s in healthy), describe(
            healthy
        )

        kill(outage.redis)  # SIGKILL, reaped: from here on nothing answers on the port
        killed = time.monotonic()
        time.sleep(0.5)
        ready = httpx.get(f"{outage.base_url}/readyz", timeout=5)
        health = httpx.get(f"{outage.base_url}/healthz", timeout=5)
        time.sleep(2.5)
        with httpx.Client(base_url=outage.base_url, headers=ADMIN, timeout=5) as client:
            started = time.monotonic()
            batch = client.post(
                "/v1/decisions/batch",
                json={
                    "requests": [{"customer_id": f"ro-b-{i}", "channel": "web"} for i in range(50)]
                },
            )
            batch_s = time.monotonic() - started

        restarting = time.monotonic()
        outage.redis = start_redis(outage.port, outage.redis_dir)  # same port, empty
        restarted = time.monotonic()
        back = None
        while time.monotonic() < restarted + 5.0:
            fresh = load.since(restarted)
            back = next((s for s in fresh if s.fallback is False), None)
            if back is not None:
                break
            time.sleep(0.05)
        time.sleep(1.0)
        settled = time.monotonic()
        time.sleep(1.0)

    assert not load.errors, load.errors[:5]
    down = load.since(killed, restarting)
    assert len(down) > 20, describe(down)
    assert all(s.status == 200 and s.fallback is True for s in down), describe(down)
    problems = budget_problems(down)
    assert not problems, f"{describe(down)}: {problems[:10]}"

    assert ready.status_code == 503 and ready.json()["store"] is False, ready.text
    assert health.status_code == 200

    assert batch.status_code == 200, batch.text
    assert batch_s < 1.0, batch_s
    assert all(d["fallback"] is True for d in batch.json()["decisions"])

    assert back is not None, (
        f"no fallback:false within 5 s of the restart: {describe(load.since(restarted))}"
    )
    after = load.since(settled)
    assert after and all(s.status == 200 and s.fallback is False for s in after), describe(after)
    assert httpx.get(f"{outage.base_url}/readyz", timeout=5).status_code == 200
    print(
        f"\nhealthy: {describe(healthy)}\ndown: {describe(down)}\n"
        f"back {back.sent - restarted:.2f} s after the restart; after: {describe(after)}"
    )


def test_a_hung_redis_costs_each_decision_at_most_its_budget(outage: Outage) -> None:
    """Redis stops answering (SIGSTOP) but keeps its connections: the worst case for a
    budget, since nothing fails fast. Decisions still answer within it; SIGCONT heals."""
    with Load(outage.base_url) as load:
        time.sleep(1.0)
        outage.redis.send_signal(signal.SIGSTOP)
        frozen = time.monotonic()
        try:
            time.sleep(2.5)
        finally:
            thawing = time.monotonic()
            outage.redis.send_signal(signal.SIGCONT)
        back = None
        while time.monotonic() < thawing + 5.0 and back is None:
            back = next((s for s in load.since(thawing) if s.fallback is False), None)
            time.sleep(0.05)
        time.sleep(1.0)
        settled = time.monotonic()
        time.sleep(1.0)

    assert not load.errors, load.errors[:5]
    # A read already answered before the stop, or answered right after the SIGCONT, is a
    # fair fallback:false: only the middle of the freeze must fall back.
    hung = load.since(frozen + 0.1, thawing - LONGEST_BUDGET_S * 2)
    assert len(hung) > 20, describe(hung)
    assert all(s.status == 200 and s.fallback is True for s in hung), describe(hung)
    problems = budget_problems(hung)
    assert not problems, f"{describe(hung)}: {problems[:10]}"
    assert back is not None, (
        f"still falling back 5 s after SIGCONT: {describe(load.since(thawing))}"
    )
    after = load.since(settled)
    assert after and all(s.fallback is False for s in after), describe(after)


def test_the_fallback_path_serves_no_marketing_it_cannot_check_consent_for(
    outage: Outage,
) -> None:
    service = service_actions(outage.base_url)  # not marketing: the consent rule exempts them
    with httpx.Client(base_url=outage.base_url, headers=ADMIN, timeout=5) as client:
        cold = client.post("/v1/decisions", json={"customer_id": "ro-cold", "channel": "web"})
        assert cold.json()["fallback"] is False
        shown = [(a["action_id"], a["kind"]) for a in cold.json()["actions"]]
        assert all(k == "activity" or a in service for a, k in shown), shown  # no consent
        kill(outage.redis)
        served = []
        for channel in ("web", "shop", "email", "call_centre"):
            reply = client.post(
                "/v1/decisions", json={"customer_id": "ro-cold", "channel": channel, "limit": 5}
            )
            assert reply.status_code == 200 and reply.json()["fallback"] is True
            served += [(channel, a["action_id"], a["kind"]) for a in reply.json()["actions"]]
    marketing = [s for s in served if s[2] in ("offer", "banner") and s[1] not in service]
    assert not marketing, marketing
