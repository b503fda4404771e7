"""Email at send time: a batch of decisions, bad items answered in place, caps kept."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import orjson
import pytest

from nba.email_run import run_email
from tests.conftest import Running, auth

pytestmark = pytest.mark.integration
ADMIN = auth("test-admin-key-0001")


def consenting(running: Running, customer: str) -> None:
    event = {
        "event_id": f"e-{customer}",
        "customer_id": customer,
        "type": "profile",
        "timestamp": "2026-11-24T09:00:00Z",
        "attributes": {"consent_marketing": True, "consent_email": True, "age": 30},
    }
    assert httpx.post(f"{running.base_url}/v1/events", json=event, headers=ADMIN).status_code == 202


def wait_profile(running: Running, customer: str) -> None:
    import time

    deadline = time.monotonic() + 30
    while not httpx.get(f"{running.base_url}/v1/customers/{customer}", headers=ADMIN).json()[
        "profile"
    ]:
        assert time.monotonic() < deadline
        time.sleep(0.2)


def test_batch_answers_in_order_with_bad_items_in_place(running: Running) -> None:
    requests = [{"customer_id": f"b-{i}", "channel": "email"} for i in range(5)]
    requests[2] = {"customer_id": "b-2", "channel": "email", "limit": 99}
    requests[3] = {"customer_id": "b-3", "channel": "carrier-pigeon"}
    reply = httpx.post(
        f"{running.base_url}/v1/decisions/batch",
        json={"requests": requests},
        headers=ADMIN,
        timeout=10,
    )
    assert reply.status_code == 200
    decisions = reply.json()["decisions"]
    assert len(decisions) == 5
    assert decisions[2]["error"]["field"] == "limit"
    assert decisions[3]["error"]["field"] == "channel"
    assert [d["customer_id"] for i, d in enumerate(decisions) if i not in (2, 3)] == [
        "b-0",
        "b-1",
        "b-4",
    ]


@pytest.mark.parametrize("item", [5, "b-1", [1], None], ids=["number", "string", "list", "null"])
def test_an_item_that_is_not_an_object_is_answered_in_its_place(
    running: Running, item: object
) -> None:
    requests = [{"customer_id": "b-0", "channel": "email"}, item]
    reply = httpx.post(
        f"{running.base_url}/v1/decisions/batch",
        json={"requests": requests},
        headers=ADMIN,
        timeout=10,
    )
    assert reply.status_code == 200, reply.text
    decided, refused = reply.json()["decisions"]
    assert decided["customer_id"] == "b-0"
    assert refused == {"error": {"field": "request", "message": "request: must be a JSON object"}}


@pytest.mark.parametrize("size", [0, 1001])
def test_batch_size_is_bounded(running: Running, size: int) -> None:
    body = {"requests": [{"customer_id": "x", "channel": "email"}] * size}
    reply = httpx.post(
        f"{running.base_url}/v1/decisions/batch", json=body, headers=ADMIN, timeout=10
    )
    assert reply.status_code == 422 and reply.json()["error"]["field"] == "requests"


def test_email_caps_hold_inside_one_batch(running: Running) -> None:
    customer = f"cap-{uuid.uuid4().hex[:8]}"
    consenting(running, customer)
    wait_profile(running, customer)
    requests = [{"customer_id": customer, "channel": "email"}] * 10
    reply = httpx.post(
        f"{running.base_url}/v1/decisions/batch",
        json={"requests": requests},
        headers=ADMIN,
        timeout=10,
    )
    kinds = [a["kind"] for d in reply.json()["decisions"] for a in d["actions"]]
    assert kinds.count("offer") + kinds.count("banner") <= 2  # two marketing emails a week
    assert len(kinds) <= 4  # four outbound contacts a week in all


def test_email_run_writes_one_line_per_recipient(running: Running, tmp_path: Path) -> None:
    ids = [f"er-{uuid.uuid4().hex[:8]}" for _ in range(25)]
    customers = tmp_path / "customers.txt"
    customers.write_text("\n".join(ids) + "\n" + orjson.dumps({"customer_id": "er-json"}).decode())
    out = tmp_path / "out.jsonl"
    assert run_email(customers, out, running.base_url, "test-decide-key-001", None, 1) == 0
    lines = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert [line["customer_id"] for line in lines] == [*ids, "er-json"]
    assert all(line["channel"] == "email" for line in lines)
