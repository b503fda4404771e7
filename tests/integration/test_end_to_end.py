"""The walking skeleton end to end: broker -> worker -> Redis -> API decisions."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from tests.conftest import Running, auth

pytestmark = pytest.mark.integration
ADMIN = auth("test-admin-key-0001")


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def produce(brokers: str, topic: str, key: str, values: list[bytes]) -> None:
    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=brokers)
        await producer.start()
        try:
            for value in values:
                await producer.send_and_wait(topic, value, key=key.encode())
        finally:
            await producer.stop()

    asyncio.run(run())


def eventually(probe: Callable[[], Any], timeout_s: float = 45.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.25)


def decide(base_url: str, customer_id: str, **extra: Any) -> dict[str, Any]:
    body = {
        "customer_id": customer_id,
        "channel": "web",
        "placement": "home_hero",
        "limit": 3,
        **extra,
    }
    reply = httpx.post(f"{base_url}/v1/decisions", json=body, headers=ADMIN, timeout=5)
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


def profile_event(customer_id: str, **attributes: Any) -> bytes:
    return orjson.dumps(
        {
            "event_id": f"e-{uuid.uuid4().hex}",
            "customer_id": customer_id,
            "type": "profile",
            "attributes": attributes,
            "timestamp": now_iso(),
        }
    )


def test_crm_profile_event_through_the_broker_changes_the_next_decision(running: Running) -> None:
    customer = f"it-{uuid.uuid4().hex[:10]}"
    before = decide(running.base_url, customer)
    # unknown customer: no consent, so nothing but the service banner
    assert {a["action_id"] for a in before["actions"]} <= {"help-and-returns"}
    produce(
        running.endpoints.kafka_brokers,
        "it.crm",
        customer,
        [profile_event(customer, consent_marketing=True, age=34, segment="family")],
    )

    def marketing() -> list[dict[str, Any]]:
        actions = decide(running.base_url, customer)["actions"]
        return actions if any(a["kind"] == "offer" for a in actions) else []

    after = eventually(marketing)
    assert after[0]["rank"] == 1


def test_posted_response_updates_its_counter(running: Running) -> None:
    customer = f"it-{uuid.uuid4().hex[:10]}"
    body = {
        "action_id": "summer-shoes-10",
        "customer_id": customer,
        "outcome": "decline",
        "timestamp": now_iso(),
    }
    reply = httpx.post(
        f"{running.base_url}/v1/responses",
        json=body,
        headers=auth("test-respond-key-01"),
        timeout=5,
    )
    assert reply.status_code == 202, reply.text

    def counters() -> dict[str, float]:
        view = httpx.get(
            f"{running.base_url}/v1/customers/{customer}",
            headers=auth("test-read-key-00001"),
            timeout=5,
        ).json()
        return dict(view["counters"])

    seen = eventually(lambda: counters().get("summer-shoes-10:decline"))
    assert seen == 1.0


def test_malformed_event_goes_to_dlq_and_the_worker_keeps_consuming(running: Running) -> None:
    customer = f"it-{uuid.uuid4().hex[:10]}"
    marker = uuid.uuid4().hex
    bad = [
        b"{not json " + marker.encode(),
        orjson.dumps(
            {
                "event_id": marker,
                "customer_id": customer,
                "type": "profile",
                "attributes": {},
                "timestamp": "yesterday",
            }
        ),
    ]
    produce(
        running.endpoints.kafka_brokers,
        "it.crm",
        customer,
        [*bad, profile_event(customer, consent_marketing=True, age=40)],
    )

    async def dead_letters() -> list[dict[str, Any]]:
        consumer = AIOKafkaConsumer(
            "it.dlq",
            bootstrap_servers=running.endpoints.kafka_brokers,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        found: list[dict[str, Any]] = []
        try:
            deadline = time.monotonic() + 45
            while len(found) < 2 and time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    for record in records:
                        letter = orjson.loads(record.value)
                        if marker in letter["value"]:
                            found.append(letter)
        finally:
            await consumer.stop()
        return found

    letters = asyncio.run(dead_letters())
    reasons = sorted(letter["reason"] for letter in letters)
    assert len(letters) == 2
    assert reasons[0].startswith("not valid JSON")
    assert reasons[1].startswith("timestamp")
    view = eventually(
        lambda: httpx.get(
            f"{running.base_url}/v1/customers/{customer}", headers=ADMIN, timeout=5
        ).json()["profile"]
    )
    assert view["age"] == 40


def test_events_over_http_reach_the_feature_store(running: Running) -> None:
    customer = f"it-{uuid.uuid4().hex[:10]}"
    events = [
        {
            "event_id": f"e-{i}-{customer}",
            "customer_id": customer,
            "type": "page_view",
            "category": "shoes",
            "timestamp": now_iso(),
        }
        for i in range(3)
    ]
    reply = httpx.post(
        f"{running.base_url}/v1/events", json=events, headers=auth("test-respond-key-01"), timeout=5
    )
    assert reply.status_code == 202 and reply.json() == {"accepted": 3}
    view = eventually(
        lambda: (
            httpx.get(f"{running.base_url}/v1/customers/{customer}", headers=ADMIN, timeout=5)
            .json()["behaviour"]
            .get("views_shoes")
            == 3.0
        )
    )
    assert view


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "/v1/decisions", {"customer_id": "c", "channel": "web"}),
        ("post", "/v1/responses", {"action_id": "a", "customer_id": "c", "outcome": "click"}),
        ("post", "/v1/events", [{}]),
        ("get", "/v1/customers/c-1", None),
    ],
)
def test_every_route_needs_a_key(running: Running, method: str, path: str, body: Any) -> None:
    reply = httpx.request(method, running.base_url + path, json=body, timeout=5)
    assert reply.status_code == 401
    assert reply.json()["error"]["code"] == "unauthorized"
    wrong = httpx.request(
        method, running.base_url + path, json=body, timeout=5, headers=auth("not-a-known-key-123")
    )
    assert wrong.status_code == 401


@pytest.mark.parametrize(
    ("key", "method", "path", "body"),
    [
        ("test-read-key-00001", "post", "/v1/decisions", {"customer_id": "c", "channel": "web"}),
        (
            "test-decide-key-001",
            "post",
            "/v1/responses",
            {"action_id": "a", "customer_id": "c", "outcome": "click"},
        ),
        ("test-decide-key-001", "get", "/v1/customers/c-1", None),
    ],
)
def test_a_key_without_the_scope_gets_403(
    running: Running, key: str, method: str, path: str, body: Any
) -> None:
    reply = httpx.request(method, running.base_url + path, json=body, headers=auth(key), timeout=5)
    assert reply.status_code == 403
    assert "scope" in reply.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"customer_id": "c", "channel": "web", "limit": 0}, "limit"),
        ({"customer_id": "", "channel": "web"}, "customer_id"),
        ({"customer_id": "c"}, "channel"),
        ({"customer_id": "c", "channel": "fax"}, "channel"),
        ({"customer_id": "c", "channel": "web", "placement": "nowhere"}, "placement"),
        ({"customer_id": "c", "channel": "web", "context": {"k": {"nested": 1}}}, "context.k"),
        ({"customer_id": "c", "channel": "web", "surprise": 1}, "surprise"),
    ],
)
def test_bad_decision_request_gets_422_naming_the_field(
    running: Running, body: dict[str, Any], field: str
) -> None:
    reply = httpx.post(f"{running.base_url}/v1/decisions", json=body, headers=ADMIN, timeout=5)
    assert reply.status_code == 422
    error = reply.json()["error"]
    assert error["field"].startswith(field), error
    assert "Traceback" not in reply.text


def test_health_readiness_and_metrics(running: Running) -> None:
    assert httpx.get(f"{running.base_url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{running.base_url}/readyz").json()
    assert ready["ready"] is True and ready["actions"] > 0
    decide(running.base_url, "metrics-probe")
    text = httpx.get(f"{running.base_url}/metrics").text
    assert 'nba_decision_seconds_bucket{channel="web"' in text
    for phase in ("forming", "read", "ranking"):  # where a page view's batch spent its time
        assert f'nba_decision_phase_seconds_count{{phase="{phase}"}}' in text, phase
    assert "nba_decision_batch_size_count" in text


def test_decision_response_has_the_contract_shape(running: Running) -> None:
    result = decide(running.base_url, "shape-probe", explain=True)
    assert result["decision_id"].startswith("d-")
    assert result["group"] in ("treatment", "control")
    assert result["fallback"] is False
    assert result["policy_version"].startswith("p-")
    assert result["took_ms"] > 0
    assert isinstance(result["excluded"], list)


def test_stream_freshness_and_lag_are_on_metrics(running: Running) -> None:
    customer = f"it-{uuid.uuid4().hex[:10]}"
    produce(running.endpoints.kafka_brokers, "it.crm", customer, [profile_event(customer, age=22)])

    def exported() -> str | None:
        text = httpx.get(f"{running.base_url}/metrics", timeout=5).text
        ok = "nba_stream_freshness_seconds{" in text and 'topic="crm"' in text
        return text if ok and "nba_stream_consumer_lag{" in text else None

    text = eventually(exported)
    assert "nba_stream_events_applied_total{" in text
