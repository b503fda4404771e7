"""Drive simulated customers through the real API over HTTP and answer each decision
with the world's hidden response; summarise what happened."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from nba.demo import DEMO_CALLERS
from nba.demo.world import DemoWorld


@dataclass
class TrafficSummary:
    decisions: int = 0
    errors: int = 0
    fallbacks: int = 0
    control: int = 0
    impressions: int = 0
    clicks: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    server_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def quantile(self, values: list[float], q: float) -> float:
        if len(values) < 2:
            return values[0] if values else 0.0
        return statistics.quantiles(values, n=100, method="inclusive")[int(q * 100) - 1]

    def lines(self) -> list[str]:
        rate = self.decisions / self.seconds if self.seconds else 0.0
        ctr = self.clicks / self.impressions if self.impressions else 0.0
        return [
            f"decisions        {self.decisions} in {self.seconds:.1f} s ({rate:.0f}/s), "
            f"errors {self.errors}, fallbacks {self.fallbacks}, control {self.control}",
            f"latency (client) p50 {self.quantile(self.latencies_ms, 0.5):.2f} ms, "
            f"p99 {self.quantile(self.latencies_ms, 0.99):.2f} ms "
            "(the demo's own HTTP client, on the same machine, included)",
            f"latency (server) p50 {self.quantile(self.server_ms, 0.5):.3f} ms, "
            f"p99 {self.quantile(self.server_ms, 0.99):.3f} ms",
            f"responses        {self.impressions} impressions, {self.clicks} clicks "
            f"(response rate {ctr:.2%})",
        ]


async def drive(
    world: DemoWorld,
    action_views: Mapping[str, Mapping[str, Any]],
    base_url: str,
    api_key: str,
    duration_s: float,
    concurrency: int = DEMO_CALLERS,
) -> TrafficSummary:
    """``action_views``: what the world knows of each action (kind, attributes)."""
    summary = TrafficSummary()
    headers = {"Authorization": f"Bearer {api_key}"}
    deadline = time.monotonic() + duration_s
    limits = httpx.Limits(
        max_connections=concurrency * 2, max_keepalive_connections=concurrency * 2
    )
    async with httpx.AsyncClient(
        base_url=base_url, headers=headers, limits=limits, timeout=10
    ) as client:

        async def respond(decision: dict[str, Any], action: dict[str, Any], outcome: str) -> None:
            await client.post(
                "/v1/responses",
                json={
                    "decision_id": decision["decision_id"],
                    "action_id": action["action_id"],
                    "customer_id": decision["customer_id"],
                    "outcome": outcome,
                    "channel": decision["channel"],
                    "timestamp": datetime.now(UTC).isoformat(),
                },
            )

        async def one_user() -> None:
            while time.monotonic() < deadline:
                customer = world.pick()
                request = world.request(customer)
                started = time.perf_counter()
                try:
                    reply = await client.post("/v1/decisions", json=request)
                except httpx.HTTPError:
                    summary.errors += 1
                    continue
                summary.latencies_ms.append((time.perf_counter() - started) * 1000)
                if reply.status_code != 200:
                    summary.errors += 1
                    continue
                decision = reply.json()
                summary.decisions += 1
                summary.server_ms.append(decision["took_ms"])
                summary.fallbacks += decision["fallback"]
                summary.control += decision["group"] == "control"
                for action in decision["actions"]:
                    summary.impressions += 1
                    await respond(decision, action, "impression")
                    view = action_views.get(action["action_id"], {"kind": action["kind"]})
                    if world.responds(customer, request["context"], view):
                        summary.clicks += 1
                        await respond(decision, action, "click")

        started = time.monotonic()
        await asyncio.gather(*(one_user() for _ in range(concurrency)))
        summary.seconds = time.monotonic() - started
    return summary
