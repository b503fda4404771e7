"""Consent and erasure (contract §3, §4 and the catalogue's global rules): a CRM event
withdrawing marketing consent removes every offer and banner from the very next
decision on every channel, inbound included; ``DELETE /v1/customers/{id}`` leaves no
trace of the customer in Redis."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

import httpx
import orjson
import pytest
import redis

from engine.config import DEMO_CATALOGUE
from feature_store.redis_store import RedisFeatureStore
from rules.catalogue import load_catalogue
from tests.conftest import Running, auth
from tests.reliability._support import produce, service_actions

pytestmark = pytest.mark.integration
ADMIN = auth("test-admin-key-0001")
DECIDE = auth("test-decide-key-001")
READ = auth("test-read-key-00001")
MARKETING = {"offer", "banner"}
PROFILE = {
    "consent_marketing": True,
    "consent_email": True,
    "age": 34,
    "segment": "family",
    "value_class": "A",
    "region": "north",
    "tenure_months": 2,
    "churn_risk": 0.7,
    "contract_days_left": 10,
    "orders": 2,
    "open_complaint": False,
}


def now() -> str:
    return datetime.now(UTC).isoformat()


def crm(customer: str, kind: str, **attributes: Any) -> tuple[bytes, bytes]:
    event = {
        "event_id": f"cs-{uuid.uuid4().hex}",
        "customer_id": customer,
        "type": kind,
        "attributes": attributes,
        "timestamp": now(),
    }
    return customer.encode(), orjson.dumps(event)


def stored(redis_url: str, customer: str) -> Any:
    async def read() -> Any:
        store = RedisFeatureStore.from_url(redis_url)
        try:
            return await store.fetch(customer)
        finally:
            await store.close()

    return asyncio.run(read())


def until(probe: Callable[[], Any], timeout_s: float = 45.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (result := probe()):
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)
    return result


def every_placement() -> list[tuple[str, str]]:
    catalogue = load_catalogue(DEMO_CATALOGUE)
    return [
        (channel, placement)
        for channel in sorted(catalogue.channel_names())
        for placement in catalogue.placements(channel)
    ]


def decide_everywhere(base_url: str, customer: str) -> list[tuple[str, str, str, str, bool]]:
    """(channel, placement, action, kind, fallback) for every placement, as many as 20."""
    shown = []
    with httpx.Client(base_url=base_url, headers=DECIDE, timeout=5) as client:
        for channel, placement in every_placement():
            for context in ({}, {"page_category": "shoes", "device": "mobile"}):
                reply = client.post(
                    "/v1/decisions",
                    json={
                        "customer_id": customer,
                        "channel": channel,
                        "placement": placement,
                        "context": context,
                        "limit": 20,
                    },
                )
                assert reply.status_code == 200, reply.text
                body = reply.json()
                shown += [
                    (channel, placement, a["action_id"], a["kind"], body["fallback"])
                    for a in body["actions"]
                ]
                shown.append((channel, placement, "", "", body["fallback"]))
    return shown


def test_withdrawn_marketing_consent_removes_every_offer_and_banner_at_once(
    running: Running,
) -> None:
    brokers, redis_url = running.endpoints.kafka_brokers, running.endpoints.redis_url
    customer = f"cs-{uuid.uuid4().hex[:10]}"
    produce(brokers, "it.crm", [crm(customer, "profile", **PROFILE)])
    until(lambda: stored(redis_url, customer).profile.get("consent_marketing") is True)
    before = decide_everywhere(running.base_url, customer)
    marketing_before = {(c, a) for c, _, a, k, _ in before if k in MARKETING}
    assert {c for c, _ in marketing_before} >= {"web", "shop", "email"}, marketing_before

    produce(brokers, "it.crm", [crm(customer, "consent", channel="marketing", granted=False)])
    until(lambda: stored(redis_url, customer).profile.get("consent_marketing") is False)
    after = decide_everywhere(running.base_url, customer)  # the very next decisions
    service = service_actions(running.base_url)  # e.g. help-and-returns: not marketing
    assert not any(fallback for *_, fallback in after)
    leaked = [(c, p, a) for c, p, a, k, _ in after if k in MARKETING and a not in service]
    assert not leaked, f"marketing after consent was withdrawn: {leaked}"
    assert any(k == "activity" for *_, k, _ in after)  # service still reaches the customer

    with httpx.Client(base_url=running.base_url, timeout=5) as client:
        batch = client.post(
            "/v1/decisions/batch",
            headers=DECIDE,
            json={"requests": [{"customer_id": customer, "channel": "email", "limit": 20}] * 3},
        ).json()["decisions"]
        assert all(
            a["kind"] not in MARKETING or a["action_id"] in service
            for d in batch
            for a in d["actions"]
        ), batch
        view = client.get(f"/v1/customers/{customer}", headers=READ).json()
        previews = [a for actions in view["next_best_actions"].values() for a in actions]
        assert all(a["kind"] not in MARKETING or a["action_id"] in service for a in previews), (
            previews
        )
        explained = client.post(
            "/v1/decisions",
            headers=DECIDE,
            json={"customer_id": customer, "channel": "web", "limit": 20, "explain": True},
        ).json()
    assert explained["actions"] == [] or all(
        a["kind"] not in MARKETING or a["action_id"] in service for a in explained["actions"]
    )
    reasons = " ".join(str(e["excluded_by"]) for e in explained["excluded"])
    assert "consent" in reasons, explained["excluded"]


# -- erasure ---------------------------------------------------------------------------


def traces(client: redis.Redis, needle: str) -> list[str]:
    """Every key whose name, hash field, member or value mentions ``needle``."""
    found: list[str] = []
    raw = needle.encode()
    keys = list(client.scan_iter(count=1000))
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        pipe = client.pipeline(transaction=False)
        for key in chunk:
            pipe.type(key)
        kinds = pipe.execute()
        pipe = client.pipeline(transaction=False)
        for key, kind in zip(chunk, kinds, strict=True):
            if kind == b"hash":
                pipe.hgetall(key)
            elif kind == b"string":
                pipe.get(key)
            elif kind == b"list":
                pipe.lrange(key, 0, -1)
            elif kind == b"set":
                pipe.smembers(key)
            elif kind == b"zset":
                pipe.zrange(key, 0, -1)
            else:  # streams and others: the name is checked
                pipe.type(key)
        for key, value in zip(chunk, pipe.execute(), strict=True):
            if raw in key:
                found.append(f"key {key!r}")
            elif isinstance(value, dict):
                found += [f"field {f!r} of {key!r}" for f, v in value.items() if raw in f + v]
            elif isinstance(value, bytes) and raw in value:
                found.append(f"value of {key!r}")
            elif isinstance(value, list | set) and any(raw in item for item in value):
                found.append(f"member of {key!r}")
    return found


def give_traces(running: Running, customer: str) -> None:
    """Profile, contact history, behaviour, response counters, cap reservations."""
    brokers = running.endpoints.kafka_brokers
    produce(
        brokers,
        "it.crm",
        [
            crm(customer, "profile", **PROFILE),
            crm(customer, "contact", channel="call_centre", note="called"),
        ],
    )
    view = {
        "event_id": f"er-{uuid.uuid4().hex}",
        "customer_id": customer,
        "type": "page_view",
        "category": "shoes",
        "timestamp": now(),
    }
    produce(brokers, "it.clickstream", [(customer.encode(), orjson.dumps(view))])
    with httpx.Client(base_url=running.base_url, timeout=5) as client:
        for channel in ("web", "email", "call_centre"):
            decision = client.post(
                "/v1/decisions", headers=DECIDE, json={"customer_id": customer, "channel": channel}
            ).json()
        reply = client.post(
            "/v1/responses",
            headers=auth("test-respond-key-01"),
            json={
                "decision_id": decision["decision_id"],
                "action_id": "summer-shoes-10",
                "customer_id": customer,
                "outcome": "decline",
            },
        )
        assert reply.status_code == 202, reply.text

    def all_there() -> bool:
        state = stored(running.endpoints.redis_url, customer)
        return bool(
            state.profile.get("consent_marketing")
            and state.behaviour.get("views_total")
            and state.counters.get("summer-shoes-10:decline")
        )

    until(all_there)


def test_erasure_leaves_no_trace_of_the_customer_in_redis(running: Running) -> None:
    customer = f"er-{uuid.uuid4().hex[:12]}"
    give_traces(running, customer)
    client = redis.Redis.from_url(running.endpoints.redis_url)
    try:
        assert len(traces(client, customer)) >= 4  # the probe sees what it must erase
        with httpx.Client(base_url=running.base_url, timeout=5) as http:
            assert (
                http.delete(f"/v1/customers/{customer}", headers=READ).status_code == 403
            )  # admin only
            reply = http.delete(f"/v1/customers/{customer}", headers=ADMIN)
            assert reply.status_code == 204, reply.text
            assert reply.content == b""
            time.sleep(1.0)  # a late write of the worker or the API would show now
            left = traces(client, customer)
            assert not left, left
            view = http.get(f"/v1/customers/{customer}", headers=READ).json()
            assert view["known"] is False and view["history"] == [], view
            again = http.delete(f"/v1/customers/{customer}", headers=ADMIN)
            assert again.status_code == 204  # erasing nobody is not an error
    finally:
        client.close()


def test_erasure_leaves_customers_whose_id_extends_the_erased_one_alone(
    running: Running,
) -> None:
    """The store's keys are 'nba:{<id>}:<view>' and erasure deletes 'nba:{<id>}:*': ids
    that extend the erased one keep their data, and ids with a brace (which could close
    the hash tag early and match the glob) are refused at every edge."""
    victim = f"er-{uuid.uuid4().hex[:8]}"
    neighbours = [f"{victim}:other", f"{victim}-2", f"{victim}*", f"{victim}\\x"]
    produce(
        running.endpoints.kafka_brokers,
        "it.crm",
        [crm(victim, "profile", age=40)] + [crm(n, "profile", age=50) for n in neighbours],
    )
    redis_url = running.endpoints.redis_url
    until(lambda: stored(redis_url, victim).profile.get("age") == 40)
    for neighbour in neighbours:
        until(partial(lambda n: stored(redis_url, n).profile.get("age") == 50, neighbour))
    reply = httpx.delete(f"{running.base_url}/v1/customers/{victim}", headers=ADMIN, timeout=5)
    assert reply.status_code == 204
    assert stored(redis_url, victim).known is False
    for neighbour in neighbours:
        assert stored(redis_url, neighbour).profile.get("age") == 50, f"{neighbour} was erased"

    braced = f"{victim}}}:other"
    with httpx.Client(base_url=running.base_url, timeout=5) as client:
        for reply in (
            client.delete(f"/v1/customers/{braced}", headers=ADMIN),
            client.get(f"/v1/customers/{braced}", headers=READ),
            client.post(
                "/v1/decisions", headers=DECIDE, json={"customer_id": braced, "channel": "web"}
            ),
        ):
            assert reply.status_code == 422, reply.text
            assert reply.json()["error"]["field"] == "customer_id", reply.text
