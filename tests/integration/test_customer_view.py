"""The single customer view (contract §3): its recent contacts, from what the contact
policies keep in Redis, beside its responses, and its answer as the OpenAPI document
describes it."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest

from tests.conftest import Running, auth
from tests.reliability._support import produce
from tests.reliability.test_consent_and_erasure import PROFILE, crm, stored, until

pytestmark = pytest.mark.integration
DECIDE = auth("test-decide-key-001")
RESPOND = auth("test-respond-key-01")
READ = auth("test-read-key-00001")
MARKETING = {"offer", "banner"}


def view(base_url: str, customer: str) -> dict[str, Any]:
    reply = httpx.get(f"{base_url}/v1/customers/{customer}", headers=READ, timeout=5)
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


def test_the_view_lists_the_emails_decided_and_the_impressions_reported(
    running: Running,
) -> None:
    brokers, redis_url = running.endpoints.kafka_brokers, running.endpoints.redis_url
    customer = f"cv-{uuid.uuid4().hex[:10]}"
    produce(brokers, "it.crm", [crm(customer, "profile", **PROFILE)])
    until(lambda: stored(redis_url, customer).profile.get("consent_email") is True)

    with httpx.Client(base_url=running.base_url, timeout=5) as client:
        before = time.time()
        email = client.post(
            "/v1/decisions",
            headers=DECIDE,
            json={"customer_id": customer, "channel": "email", "limit": 3},
        ).json()
        after = time.time()
        web = client.post(
            "/v1/decisions", headers=DECIDE, json={"customer_id": customer, "channel": "web"}
        ).json()
    sent = email["actions"]
    assert sent and email["fallback"] is False, email
    shown = web["actions"][0]["action_id"]
    reply = httpx.post(
        f"{running.base_url}/v1/responses",
        headers=RESPOND,
        json={
            "decision_id": web["decision_id"],
            "action_id": shown,
            "customer_id": customer,
            "outcome": "impression",
            "channel": "web",
        },
        timeout=5,
    )
    assert reply.status_code == 202, reply.text
    until(lambda: stored(redis_url, customer).counters.get(f"{shown}:imp_ts"))

    contacts = view(running.base_url, customer)["contacts"]
    decided = [c for c in contacts if c["source"] == "decision"]
    # every email the decision chose used room in the demo's caps: one contact each
    assert len(decided) == len(sent), contacts
    assert all(c["channel"] == "email" and c["action_id"] is None for c in decided), decided
    assert all(before - 0.01 <= c["at"] <= after + 0.01 for c in decided), (before, decided)
    assert all("outbound-contacts" in c["caps"] for c in decided), decided
    marketing = sum(1 for a in sent if a["kind"] in MARKETING)
    assert sum(1 for c in decided if "marketing-emails" in c["caps"]) == marketing, decided
    impressions = [c for c in contacts if c["source"] == "impression"]
    assert [(c["action_id"], c["channel"]) for c in impressions] == [(shown, "web")], contacts
    assert contacts == sorted(contacts, key=lambda c: -c["at"])  # newest first


def test_a_previewed_customer_has_no_contacts(running: Running) -> None:
    """The view's own previews reserve nothing: looking is not contacting."""
    customer = f"cv-{uuid.uuid4().hex[:10]}"
    first = view(running.base_url, customer)
    again = view(running.base_url, customer)
    assert first["contacts"] == again["contacts"] == []
    assert again["next_best_actions"]  # previews were decided


def test_the_view_answers_what_its_schema_documents(running: Running) -> None:
    schema = httpx.get(f"{running.base_url}/openapi.json", timeout=5).json()
    route = schema["paths"]["/v1/customers/{customer_id}"]
    documented = route["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    model = schema["components"]["schemas"][documented["$ref"].rsplit("/", 1)[-1]]
    body = view(running.base_url, f"cv-{uuid.uuid4().hex[:10]}")
    assert set(body) == set(model["properties"]) == set(model["required"])
    contact = schema["components"]["schemas"]["Contact"]
    assert set(contact["properties"]) == {"at", "source", "channel", "action_id", "caps"}
    for method in ("get", "delete"):
        unavailable = route[method]["responses"]["503"]["content"]["application/json"]
        assert unavailable["schema"]["$ref"].endswith("/ErrorBody"), route[method]
