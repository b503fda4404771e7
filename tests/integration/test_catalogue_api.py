"""The catalogue over the API: validated, versioned, live in every process within 1 s,
kept across a restart; a bad change is refused and the last good one keeps serving."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest

from engine.embedded import free_port
from tests.conftest import Running, _spawn, _stop, auth

pytestmark = pytest.mark.integration
ADMIN = auth("test-admin-key-0001")


def new_action(action_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "kind": "activity",
        "name": "Ask about the new plan",
        "channels": ["call_centre"],
        "value": 500.0,
        "lever": 3.0,
        "attributes": {"category": "service"},
        "eligibility": "customer.plan_test == true",
        **extra,
    }


def decide_ids(base_url: str, customer: str) -> list[str]:
    body = {"customer_id": customer, "channel": "call_centre", "limit": 5}
    reply = httpx.post(f"{base_url}/v1/decisions", json=body, headers=ADMIN, timeout=5)
    return [a["action_id"] for a in reply.json()["actions"]]


def start_server(running: Running) -> tuple[Any, str]:
    port = free_port()
    env = {**running.env, "NBA_PORT": str(port)}
    process = _spawn(["serve"], env, running.data_dir / f"serve-{port}.log")
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return process, base
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline and process.poll() is None, "second server down"
        time.sleep(0.2)


def test_put_is_live_in_every_process_within_a_second_and_survives_restart(
    running: Running,
) -> None:
    second, second_url = start_server(running)
    try:
        action_id = f"plan-{uuid.uuid4().hex[:8]}"
        before = httpx.get(f"{second_url}/v1/actions", headers=ADMIN).json()["policy_version"]
        reply = httpx.put(
            f"{running.base_url}/v1/actions/{action_id}",
            json=new_action(action_id),
            headers=ADMIN,
            timeout=10,
        )
        assert reply.status_code == 200, reply.text
        version = reply.json()["policy_version"]
        assert version != before
        started = time.monotonic()
        while httpx.get(f"{second_url}/v1/actions/{action_id}", headers=ADMIN).status_code != 200:
            assert time.monotonic() - started < 1.0, "the change did not reach the other process"
            time.sleep(0.05)
        # the new action decides for a customer it fits
        httpx.post(
            f"{running.base_url}/v1/events",
            headers=ADMIN,
            json={
                "event_id": f"e-{action_id}",
                "customer_id": action_id,
                "type": "profile",
                "attributes": {"plan_test": True},
                "timestamp": "2026-11-24T10:00:00Z",
            },
        )
        deadline = time.monotonic() + 30
        while action_id not in decide_ids(second_url, action_id):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        decision = httpx.post(
            f"{second_url}/v1/decisions",
            headers=ADMIN,
            json={"customer_id": action_id, "channel": "call_centre"},
        ).json()
        assert decision["policy_version"] == version
    finally:
        _stop(second)
    # a restarted process serves the stored change
    third, third_url = start_server(running)
    try:
        assert httpx.get(f"{third_url}/v1/actions/{action_id}", headers=ADMIN).status_code == 200
    finally:
        _stop(third)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "coupon"}, "kind"),
        ({"eligibility": "customer.age >>= 3"}, "eligibility"),
        ({"value": -5}, "value"),
        ({"id": "other-id"}, "id"),
    ],
)
def test_a_bad_change_is_refused_and_the_last_good_keeps_serving(
    running: Running, body: dict[str, Any], field: str
) -> None:
    catalogue = httpx.get(f"{running.base_url}/v1/actions", headers=ADMIN).json()
    action_id = "summer-shoes-10"
    reply = httpx.put(
        f"{running.base_url}/v1/actions/{action_id}",
        json={**new_action(action_id), **body},
        headers=ADMIN,
    )
    assert reply.status_code == 422
    assert field in reply.text
    after = httpx.get(f"{running.base_url}/v1/actions", headers=ADMIN).json()
    assert after["policy_version"] == catalogue["policy_version"]


def test_delete_removes_an_action_and_needs_admin(running: Running) -> None:
    action_id = f"gone-{uuid.uuid4().hex[:8]}"
    assert (
        httpx.put(
            f"{running.base_url}/v1/actions/{action_id}", json=new_action(action_id), headers=ADMIN
        ).status_code
        == 200
    )
    denied = httpx.delete(
        f"{running.base_url}/v1/actions/{action_id}", headers=auth("test-read-key-00001")
    )
    assert denied.status_code == 403
    assert (
        httpx.delete(f"{running.base_url}/v1/actions/{action_id}", headers=ADMIN).status_code == 204
    )
    assert httpx.get(f"{running.base_url}/v1/actions/{action_id}", headers=ADMIN).status_code == 404
    assert (
        httpx.delete(f"{running.base_url}/v1/actions/{action_id}", headers=ADMIN).status_code == 404
    )
