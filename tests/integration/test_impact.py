"""The uplift counters: decisions per action, channel and group from the decision log,
responders once per decision however often a response repeats."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson
import pytest
import redis

from engine.domain import parse_decision_id
from feature_store.impact_store import RedisImpactStore
from tests.conftest import ROOT, Running, auth

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
    stamped = datetime.fromisoformat(report["generated_at"].replace("Z", "+00:00"))
    assert abs((datetime.now(UTC) - stamped).total_seconds()) < 60
    page = httpx.get(f"{running.base_url}/v1/reports/uplift?format=html", headers=ADMIN, timeout=30)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert httpx.get(f"{running.base_url}/reports/").status_code == 200
    denied = httpx.get(f"{running.base_url}/v1/reports/uplift", headers=auth("test-decide-key-001"))
    assert denied.status_code == 403


def cells_of(running: Running) -> dict[tuple[str, str, str], dict[str, int]]:
    async def read() -> dict[tuple[str, str, str], dict[str, int]]:
        store = RedisImpactStore.from_url(running.endpoints.redis_url)
        try:
            return {
                (c.action_id, c.channel, c.group): {"decisions": c.decisions, **c.responders}
                for c in await store.cells()
            }
        finally:
            await store.close()

    return asyncio.run(read())


def report_uplift(running: Running, out: Path) -> subprocess.CompletedProcess[str]:
    """``nba report uplift --out DIR`` against the running servers."""
    return subprocess.run(
        [sys.executable, "-m", "nba.cli", "report", "uplift", "--out", str(out)],
        env=running.env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=str(ROOT),
        check=False,
    )


def test_a_response_to_an_action_the_decision_did_not_choose_is_flagged_not_fatal(
    running: Running, tmp_path: Path
) -> None:
    """A response naming an action its decision did not choose (and one whose decision id
    names a channel with a ``|``) lands in a cell with no decisions: the report is still
    served, by the API and the command, with that cell flagged and left out of the rates."""
    stray = f"no-such-action-{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=running.base_url, headers=ADMIN, timeout=10) as client:
        customer = f"imp-{uuid.uuid4().hex[:8]}"
        decision = client.post(
            "/v1/decisions", json={"customer_id": customer, "channel": "web"}
        ).json()
        assert stray not in [a["action_id"] for a in decision["actions"]]
        group = decision["group"]
        forged = f"d-t{uuid.uuid4().hex[:24]}-web|{stray}"
        for decision_id in (decision["decision_id"], forged):
            sent = client.post(
                "/v1/responses",
                json={
                    "decision_id": decision_id,
                    "action_id": stray,
                    "customer_id": customer,
                    "outcome": "click",
                    "value": 5.0,
                },
            )
            assert sent.status_code == 202, sent.text
    wanted = {(stray, "web", group), (stray, f"web|{stray}", "treatment")}
    deadline = time.monotonic() + 30
    while not all(cells_of(running).get(k, {}).get("click") == 1 for k in wanted):
        assert time.monotonic() < deadline, cells_of(running)
        time.sleep(0.3)

    reply = httpx.get(f"{running.base_url}/v1/reports/uplift", headers=ADMIN, timeout=30)
    assert reply.status_code == 200, reply.text
    rows = {(r["action_id"], r["channel"]): r for r in reply.json()["actions"]}
    for channel, in_group in (("web", group), (f"web|{stray}", "treatment")):
        row = rows[(stray, channel)]
        assert row["flagged"] and row["note"] and row["verdict"] is None
        assert row[in_group]["decisions"] == 0 and row[in_group]["rates"]["click"] is None
        assert row[in_group]["set_aside"]["unmatched"]["click"] == 1
    web = next(r for r in reply.json()["channels"] if r["channel"] == "web")
    assert web["flagged"] and web["treatment"]["decisions"] + web["control"]["decisions"] > 0
    page = httpx.get(f"{running.base_url}/v1/reports/uplift?format=html", headers=ADMIN, timeout=30)
    assert page.status_code == 200 and stray in page.text and "Flagged:" in page.text

    done = report_uplift(running, tmp_path / "report")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and f"{stray:<28} flagged" in done.stdout
    data = orjson.loads((tmp_path / "report" / "uplift.json").read_text())
    assert any(r["action_id"] == stray and r["flagged"] for r in data["actions"])
    assert (tmp_path / "report" / "uplift.png").exists()


def test_a_corrupt_counter_is_refused_with_a_clear_error(running: Running, tmp_path: Path) -> None:
    store = RedisImpactStore.from_url(running.endpoints.redis_url)
    key, field = store.counts_key, f"corrupt-{uuid.uuid4().hex[:8]}|web|treatment|decisions"
    with redis.Redis.from_url(running.endpoints.redis_url) as client:
        client.hset(key, field, "oops")
        try:
            reply = httpx.get(f"{running.base_url}/v1/reports/uplift", headers=ADMIN, timeout=30)
            assert reply.status_code == 500
            error = reply.json()["error"]
            assert error["code"] == "invalid_stored_data"
            assert field in error["message"] and "not an integer" in error["message"]
            done = report_uplift(running, tmp_path / "report")
            assert done.returncode == 2 and done.stdout == ""
            assert done.stderr.count("\n") == 1 and field in done.stderr, done.stderr
            client.hset(key, field, "-2")  # a number, but not a count
            reply = httpx.get(f"{running.base_url}/v1/reports/uplift", headers=ADMIN, timeout=30)
            assert reply.status_code == 500, reply.text
            assert "decisions must be an integer >= 0" in reply.json()["error"]["message"]
        finally:
            client.hdel(key, field)
    assert httpx.get(f"{running.base_url}/v1/reports/uplift", headers=ADMIN).status_code == 200
