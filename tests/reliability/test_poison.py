"""Poison events (not JSON, wrong types, over 256 KiB, unknown type, not an object,
empty) land in the dead-letter topic with a reason while the worker keeps consuming:
the valid events around them are all applied, and 10% poison costs little throughput
(contract §4)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis
from aiokafka import AIOKafkaConsumer

from feature_store.redis_store import RedisFeatureStore
from tests.conftest import Running, auth
from tests.reliability._support import nba, produce, stop, tail, worker_env, world_topics

pytestmark = [pytest.mark.integration, pytest.mark.slow]
PREFIX = "po."
ACTION = "summer-shoes-10"


def now() -> str:
    return datetime.now(UTC).isoformat()


def click(customer: str, event_id: str, **extra: Any) -> bytes:
    return orjson.dumps(
        {
            "event_id": event_id,
            "customer_id": customer,
            "action_id": ACTION,
            "outcome": "click",
            "timestamp": now(),
            **extra,
        }
    )


def poison(marker: str) -> dict[str, tuple[str, bytes | None, str]]:
    """name -> (topic, value, what the reason must contain)."""
    huge = orjson.dumps(
        {
            "event_id": f"{marker}-huge",
            "customer_id": "c",
            "type": "profile",
            "attributes": {"blob": "x" * (300 * 1024)},
            "timestamp": now(),
        }
    )
    assert len(huge) > 256 * 1024
    return {
        "invalid-json": ("crm", b'{"event_id": "' + marker.encode() + b'", not json', "JSON"),
        "wrong-types": (
            "crm",
            orjson.dumps(
                {
                    "event_id": f"{marker}-types",
                    "customer_id": ["not", "a", "string"],
                    "type": "profile",
                    "attributes": "not an object",
                    "timestamp": now(),
                }
            ),
            "customer_id",
        ),
        "wrong-number": (
            "clickstream",
            orjson.dumps(
                {
                    "event_id": f"{marker}-price",
                    "customer_id": "c",
                    "type": "purchase",
                    "price": "ten",
                    "timestamp": now(),
                }
            ),
            "price",
        ),
        "huge": ("crm", huge, "limit"),
        "unknown-type": (
            "crm",
            orjson.dumps(
                {
                    "event_id": f"{marker}-type",
                    "customer_id": "c",
                    "type": "teleport",
                    "attributes": {},
                    "timestamp": now(),
                }
            ),
            "type",
        ),
        "unknown-outcome": (
            "responses",
            orjson.dumps(
                {
                    "event_id": f"{marker}-outcome",
                    "customer_id": "c",
                    "action_id": ACTION,
                    "outcome": "teleported",
                    "timestamp": now(),
                }
            ),
            "outcome",
        ),
        "array": ("crm", orjson.dumps([{"event_id": marker}]), "object"),
        "string": ("clickstream", orjson.dumps(marker), "object"),
        "number": ("responses", b"42", "object"),
        "null": ("crm", b"null", "object"),
        "empty": ("responses", b"", ""),
        "tombstone": ("crm", None, ""),
    }


def dead_letters(
    brokers: str, keys: set[str], timeout_s: float = 60.0
) -> dict[str, dict[str, Any]]:
    """DLQ letters whose message key is in ``keys``, by key."""

    async def go() -> dict[str, dict[str, Any]]:
        consumer = AIOKafkaConsumer(
            f"{PREFIX}dlq",
            bootstrap_servers=brokers,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            metadata_max_age_ms=500,
            fetch_max_bytes=8 * 1024 * 1024,
        )
        await consumer.start()
        found: dict[str, dict[str, Any]] = {}
        try:
            deadline = time.monotonic() + timeout_s
            while not keys <= found.keys() and time.monotonic() < deadline:
                for records in (await consumer.getmany(timeout_ms=300)).values():
                    for record in records:
                        key = (record.key or b"").decode()
                        if key in keys:
                            found[key] = orjson.loads(record.value)
        finally:
            await consumer.stop()
        return found

    result: dict[str, dict[str, Any]] = asyncio.run(go())
    return result


def clicks(redis_url: str, customers: list[str], field: str = f"{ACTION}:click") -> list[float]:
    async def read() -> list[float]:
        store = RedisFeatureStore.from_url(redis_url)
        try:
            states = await store.fetch_many(customers)
            return [float(s.counters.get(field, 0.0)) for s in states]
        finally:
            await store.close()

    return asyncio.run(read())


def wait_applied(
    redis_url: str, customers: list[str], each: float, timeout_s: float = 90.0
) -> float:
    """Seconds until every customer has ``each`` clicks."""
    started = time.monotonic()
    while min(clicks(redis_url, customers)) < each:
        assert time.monotonic() - started < timeout_s, clicks(redis_url, customers)
        time.sleep(0.05)
    return time.monotonic() - started


@pytest.fixture(scope="module")
def worker(running: Running, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    data = tmp_path_factory.mktemp("poison")
    world_topics(running.endpoints.kafka_brokers, PREFIX)
    log = data / "worker.log"
    process = nba(["worker"], worker_env(running, data / "data", PREFIX), log)
    try:
        probe = f"po-probe-{uuid.uuid4().hex[:8]}"
        produce(
            running.endpoints.kafka_brokers,
            f"{PREFIX}responses",
            [(probe.encode(), click(probe, probe))],
        )
        deadline = time.monotonic() + 90
        while clicks(running.endpoints.redis_url, [probe])[0] < 1:
            assert process.poll() is None and time.monotonic() < deadline, tail(log)
            time.sleep(0.2)
        yield log
    finally:
        stop(process)
    assert process.returncode is not None


def test_every_kind_of_poison_lands_in_the_dlq_and_the_events_around_it_are_applied(
    running: Running, worker: Path
) -> None:
    brokers, redis_url = running.endpoints.kafka_brokers, running.endpoints.redis_url
    marker = uuid.uuid4().hex[:8]
    customer = f"po-{marker}"
    kinds = poison(marker)
    keys = {name: f"{marker}-{name}" for name in kinds}
    # Each topic: valid, poison, valid, poison, ... with the same key order per partition.
    valid_n = 0
    for topic in ("crm", "clickstream", "responses"):
        records: list[tuple[bytes | None, bytes | None]] = []
        for name, (where, value, _) in kinds.items():
            if where != topic:
                continue
            valid_n += 1
            records.append(
                (customer.encode(), click(customer, f"{marker}-v{valid_n}"))
                if topic == "responses"
                else (customer.encode(), profile_or_view(topic, customer, marker, valid_n))
            )
            records.append((keys[name].encode(), value))
        records.append((customer.encode(), last_of(topic, customer, marker)))
        produce(brokers, f"{PREFIX}{topic}", records)

    letters = dead_letters(brokers, set(keys.values()))
    missing = sorted(n for n, k in keys.items() if k not in letters)
    assert not missing, f"not dead-lettered: {missing}; worker log: {tail(worker, 1500)}"
    for name, (topic, _, expected) in kinds.items():
        letter = letters[keys[name]]
        assert letter["reason"], (name, letter)
        assert expected.lower() in letter["reason"].lower(), (name, letter["reason"])
        assert letter["topic"] in (topic, f"{PREFIX}{topic}"), (name, letter)
        assert len(orjson.dumps(letter)) < 16 * 1024, f"{name}: the letter carries the payload"

    # The valid events (before, between and after the poison) were all applied.
    async def state() -> Any:
        store = RedisFeatureStore.from_url(redis_url)
        try:
            return await store.fetch(customer)
        finally:
            await store.close()

    deadline = time.monotonic() + 60
    while True:
        found = asyncio.run(state())
        responses = sum(1 for n in kinds.values() if n[0] == "responses") + 1
        done = (
            found.counters.get(f"{ACTION}:click") == responses
            and found.profile.get("po_last") == marker
            and found.behaviour.get("views_total") == views_expected(kinds)
        )
        if done or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert found.counters.get(f"{ACTION}:click") == responses, found.counters
    assert found.profile.get("po_last") == marker, found.profile
    assert found.behaviour.get("views_total") == views_expected(kinds), found.behaviour


def views_expected(kinds: dict[str, tuple[str, bytes | None, str]]) -> float:
    return float(sum(1 for n in kinds.values() if n[0] == "clickstream") + 1)


def profile_or_view(topic: str, customer: str, marker: str, n: int) -> bytes:
    if topic == "crm":
        return orjson.dumps(
            {
                "event_id": f"{marker}-v{n}",
                "customer_id": customer,
                "type": "profile",
                "attributes": {f"po_{n}": n},
                "timestamp": now(),
            }
        )
    return orjson.dumps(
        {
            "event_id": f"{marker}-v{n}",
            "customer_id": customer,
            "type": "page_view",
            "category": "shoes",
            "timestamp": now(),
        }
    )


def last_of(topic: str, customer: str, marker: str) -> bytes:
    """The last valid event of a topic: its effect shows the worker got past the poison."""
    if topic == "crm":
        return orjson.dumps(
            {
                "event_id": f"{marker}-last-crm",
                "customer_id": customer,
                "type": "profile",
                "attributes": {"po_last": marker},
                "timestamp": now(),
            }
        )
    if topic == "clickstream":
        return profile_or_view("clickstream", customer, f"{marker}-last", 0)
    return click(customer, f"{marker}-last-resp")


def batch(
    marker: str, customers: list[str], per_customer: int, poison_share: float
) -> list[tuple[bytes, bytes | None]]:
    """Response events round-robin over ``customers``; every 1/share-th record is poison."""
    records: list[tuple[bytes, bytes | None]] = []
    every = round(1 / poison_share) if poison_share else 0
    kinds = list(poison(marker).values())
    light = [k for k in kinds if k[1] is None or len(k[1]) < 4096]
    n = 0
    for i in range(per_customer):
        for customer in customers:
            records.append((customer.encode(), click(customer, f"{marker}-{customer}-{i}")))
            n += 1
            if every and n % (every - 1) == 0:
                kind = light[n % len(light)] if n % 50 else kinds[3]  # a huge one now and then
                records.append((f"{marker}-p{n}".encode(), kind[1]))
    return records


# Events per customer in each throughput run: 10,000 in all, about a second of the worker's
# work, so that the fixed costs around a run (the producer's start, the 50 ms polls) do
# not decide the ratio
PER_CUSTOMER = 500


def test_throughput_with_10_percent_poison_is_close_to_the_clean_one(
    running: Running, worker: Path
) -> None:
    brokers, redis_url = running.endpoints.kafka_brokers, running.endpoints.redis_url
    rates = {}
    for label, share in (("clean", 0.0), ("poisoned", 0.1), ("clean again", 0.0)):
        marker = uuid.uuid4().hex[:8]
        customers = [f"po-t-{marker}-{c}" for c in range(20)]
        records = batch(marker, customers, PER_CUSTOMER, share)
        started = time.monotonic()
        produce(brokers, f"{PREFIX}responses", records)
        wait_applied(redis_url, customers, float(PER_CUSTOMER))
        took = time.monotonic() - started
        rates[label] = len(records) / took
        if share:
            poisoned = sum(1 for key, _ in records if not key.startswith(b"po-t-"))
            assert 0.09 * PER_CUSTOMER * 20 <= poisoned <= 0.13 * PER_CUSTOMER * 20, poisoned
    # the slower of the clean runs on either side: this machine's speed drifts within
    # seconds (once 2,096 events/s clean, then 1,031 poisoned and 1,025 clean again), and
    # a poison path twice as slow would still fall below both
    clean = min(rates["clean"], rates["clean again"])
    print(f"\nevents/s: {', '.join(f'{k} {v:.0f}' for k, v in rates.items())}")
    assert rates["poisoned"] >= 0.5 * clean, rates


def test_numbers_that_overflow_a_sum_go_to_the_dlq_and_never_break_the_customer(
    running: Running, worker: Path
) -> None:
    brokers, redis_url = running.endpoints.kafka_brokers, running.endpoints.redis_url
    marker = uuid.uuid4().hex[:8]
    customer = f"po-ovf-{marker}"
    key = customer.encode()
    produce(
        brokers,
        f"{PREFIX}responses",
        [
            (f"{marker}-1".encode(), click(customer, f"{marker}-1", value=1e308)),
            (f"{marker}-2".encode(), click(customer, f"{marker}-2", value=1e308)),
            (key, click(customer, f"{marker}-3")),
        ],
    )
    raw = redis.Redis.from_url(redis_url)
    try:
        deadline = time.monotonic() + 60
        while True:  # the last one applied (read raw: the store's own read may fail)
            seen = raw.hget(f"nba:{{{customer}}}:counters", f"{ACTION}:click")
            if (
                seen is not None
                and float(seen) >= 1
                and raw.exists(f"nba:{{{customer}}}:seen:{marker}-3")
            ):
                break
            assert time.monotonic() < deadline, tail(worker, 2000)
            time.sleep(0.1)
    finally:
        raw.close()
    view = httpx.get(
        f"{running.base_url}/v1/customers/{customer}",
        headers=auth("test-read-key-00001"),
        timeout=5,
    )
    assert view.status_code == 200, view.text
    decision = httpx.post(
        f"{running.base_url}/v1/decisions",
        json={"customer_id": customer, "channel": "web"},
        headers=auth("test-decide-key-001"),
        timeout=5,
    )
    assert decision.json()["fallback"] is False, decision.text
    letters = dead_letters(brokers, {f"{marker}-1", f"{marker}-2"})
    assert len(letters) == 2 and all("value" in x["reason"] for x in letters.values()), letters
    assert view.json()["counters"].get(f"{ACTION}:click") == 1.0, view.json()["counters"]
    refused = httpx.post(
        f"{running.base_url}/v1/responses",
        json={"action_id": ACTION, "customer_id": customer, "outcome": "click", "value": 1e308},
        headers=auth("test-respond-key-01"),
        timeout=5,
    )
    assert refused.status_code == 422 and refused.json()["error"]["field"] == "value", refused.text


def test_unclear_consent_bad_times_and_stray_keys_are_dead_lettered_and_late_events_count(
    running: Running, worker: Path
) -> None:
    """Through the broker and the worker: a consent whose ``granted`` is text, a channel
    that is not a clean name, a time hours ahead or in 1970, and a record keyed by another
    customer go to the dead-letter topic with a reason naming the field; a late page view
    still counts but does not move the recency features back."""
    brokers, redis_url = running.endpoints.kafka_brokers, running.endpoints.redis_url
    marker = uuid.uuid4().hex[:8]
    at = time.time()

    def iso(t: float) -> str:
        return datetime.fromtimestamp(t, UTC).isoformat()

    def consent(customer: str, **attributes: Any) -> bytes:
        body = {"event_id": f"{customer}-e", "customer_id": customer, "type": "consent"}
        return orjson.dumps({**body, "attributes": attributes, "timestamp": now()})

    def view(customer: str, n: int, timestamp: object, category: str) -> bytes:
        return orjson.dumps(
            {
                "event_id": f"{customer}-{n}",
                "customer_id": customer,
                "type": "page_view",
                "category": category,
                "timestamp": timestamp,
            }
        )

    c = {k: f"po-{marker}-{k}" for k in ("granted", "channel", "future", "ancient", "stray")}
    owner, late = f"po-{marker}-owner", f"po-{marker}-late"
    expected = {  # the dead letter's key -> what its reason starts with
        c["granted"]: "attributes.granted:",
        c["channel"]: "attributes.channel:",
        c["future"]: "timestamp:",
        c["ancient"]: "timestamp:",
        c["stray"]: "message key:",
    }
    produce(
        brokers,
        f"{PREFIX}crm",
        [
            (c["granted"].encode(), consent(c["granted"], channel="marketing", granted="false")),
            (c["channel"].encode(), consent(c["channel"], channel="Email ", granted=True)),
        ],
    )
    produce(
        brokers,
        f"{PREFIX}clickstream",
        [
            (c["future"].encode(), view(c["future"], 1, iso(at + 2 * 3600), "shoes")),
            (c["ancient"].encode(), view(c["ancient"], 1, 12345, "shoes")),
            (c["stray"].encode(), view(owner, 1, now(), "shoes")),  # keyed by someone else
            (late.encode(), view(late, 1, now(), "shoes")),
            (late.encode(), view(late, 2, iso(at - 3 * 3600), "bags")),  # three hours late
        ],
    )
    letters = dead_letters(brokers, set(expected))
    for key, reason in expected.items():
        assert key in letters, f"{key} not dead-lettered; worker log: {tail(worker, 1500)}"
        assert letters[key]["reason"].startswith(reason), letters[key]

    async def state(customer: str) -> Any:
        store = RedisFeatureStore.from_url(redis_url)
        try:
            return await store.fetch(customer)
        finally:
            await store.close()

    deadline = time.monotonic() + 60
    while asyncio.run(state(late)).behaviour.get("views_total") != 2:
        assert time.monotonic() < deadline, tail(worker, 1500)
        time.sleep(0.2)
    behaviour = asyncio.run(state(late)).behaviour
    assert behaviour["last_category"] == "shoes", behaviour
    assert behaviour["minutes_since_seen"] < 5, behaviour
    assert behaviour["page_view_5m"] == pytest.approx(1.0), behaviour
    assert behaviour["views_24h_bags"] == pytest.approx(1.0), behaviour
    for refused in (*c.values(), owner):
        assert not asyncio.run(state(refused)).known, refused
