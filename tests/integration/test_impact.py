"""The uplift counters: decisions per action, channel and group from the decision log,
responders once per decision however often a response repeats."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest

from engine.domain import parse_decision_id
from feature_store.impact_store import RedisImpactStore
from tests.conftest import Running, auth

pytestmark = pytest.mark.integration
ADMIN = auth("test-admin-key-0001")


def totals(running: Running) -> dict[tuple[str, str, str], tuple[int, int, float]]:
    async def read() -> dict[tuple[str, str, str], tuple[int, int, float]]:
        store = RedisImpactStore.from_url(running.endpoints.redis_url)
        try:
            return {
                (c.action_id, c.channel, c.group): (
                    c.decisions,
                    c.responders["convert"],
                    c.value_sum,
                )
                for c in await store.cells()
            }
        finally:
            await store.close()

    return asyncio.run(read())


def test_conversions_count_once_per_decision_in_their_group(running: Running) -> None:
    before = totals(running)
    shown: dict[tuple[str, str, str], int] = {}
    value = 0.0
    with httpx.Client(base_url=running.base_url, headers=ADMIN, timeout=10) as client:
        for _ in range(12):
            customer = f"imp-{uuid.uuid4().hex[:8]}"
            decision = client.post(
                "/v1/decisions", json={"customer_id": customer, "channel": "call_centre"}
            ).json()
            if not decision["actions"]:
                continue
            group, channel = parse_decision_id(decision["decision_id"]) or ("?", "?")
            assert (group, channel) == (decision["group"], "call_centre")
            action = decision["actions"][0]["action_id"]
            key = (action, "call_centre", group)
            shown[key] = shown.get(key, 0) + 1
            event_id = f"conv-{uuid.uuid4().hex}"
            for _ in range(2):  # a replayed conversion counts once
                client.post(
                    "/v1/responses",
                    json={
                        "decision_id": decision["decision_id"],
                        "action_id": action,
                        "customer_id": customer,
                        "outcome": "convert",
                        "value": 10.0,
                        "event_id": event_id,
                    },
                )
            value += 10.0
    assert shown

    def settled() -> bool:
        after = totals(running)
        return all(
            after.get(k, (0, 0, 0.0))[0] - before.get(k, (0, 0, 0.0))[0] >= n
            and after.get(k, (0, 0, 0.0))[1] - before.get(k, (0, 0, 0.0))[1] == n
            for k, n in shown.items()
        )

    deadline = time.monotonic() + 30
    while not settled():
        assert time.monotonic() < deadline, (shown, totals(running))
        time.sleep(0.3)
    after = totals(running)
    gained = sum(after[k][2] - before.get(k, (0, 0, 0.0))[2] for k in shown)
    assert gained == pytest.approx(value)


def test_uplift_report_is_served_as_json_and_html(running: Running) -> None:
    reply = httpx.get(f"{running.base_url}/v1/reports/uplift", headers=ADMIN, timeout=30)
    assert reply.status_code == 200, reply.text
    report = reply.json()
    assert {"actions", "campaigns", "channels"} <= set(report)
    page = httpx.get(f"{running.base_url}/v1/reports/uplift?format=html", headers=ADMIN, timeout=30)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert httpx.get(f"{running.base_url}/reports/").status_code == 200
    denied = httpx.get(f"{running.base_url}/v1/reports/uplift", headers=auth("test-decide-key-001"))
    assert denied.status_code == 403
