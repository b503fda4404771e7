from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from engine.events import MAX_CLOCK_SKEW_S, ClickstreamEvent, CrmEvent, ResponseEvent
from engine.schemas import ResponseRequest
from engine.writes import Append, Increment, Latest, Put
from feature_store.memory_store import MemoryFeatureStore
from streams.handlers import clickstream_writes, crm_writes, response_writes
from streams.worker import FRESHNESS_HORIZON_S, decode_event, fresh_times, key_problem

T = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def test_profile_attributes_become_profile_fields() -> None:
    event = CrmEvent(
        event_id="e1",
        customer_id="c1",
        type="profile",
        timestamp=T,
        attributes={"age": 30, "segment": "family", "consent_marketing": True},
    )
    writes = crm_writes(event)
    assert writes.event_id == "e1" and writes.customer_id == "c1"
    assert set(writes.writes) == {
        Put("profile", "age", 30),
        Put("profile", "segment", "family"),
        Put("profile", "consent_marketing", True),
    }


def test_consent_withdrawal_is_a_profile_flag() -> None:
    event = CrmEvent(
        event_id="e2",
        customer_id="c1",
        type="consent",
        timestamp=T,
        attributes={"channel": "marketing", "granted": False},
    )
    assert crm_writes(event).writes == (
        Latest("profile", "consent_marketing", False, T.timestamp(), "consent_marketing_at"),
    )


def test_page_view_counts_the_category() -> None:
    event = ClickstreamEvent(
        event_id="e3", customer_id="c1", type="page_view", category="shoes", timestamp=T
    )
    writes = clickstream_writes(event).writes
    assert Increment("behaviour", "views_shoes") in writes
    assert (
        Latest("behaviour", "last_category", "shoes", T.timestamp(), "last_category_at") in writes
    )


def test_a_response_counts_per_action_and_outcome_and_joins_the_history() -> None:
    event = ResponseEvent(
        event_id="e4",
        customer_id="c1",
        action_id="a-1",
        outcome="decline",
        timestamp=T,
        decision_id="d-1",
    )
    writes = response_writes(event).writes
    assert Increment("counters", "a-1:decline") in writes
    at = T.timestamp()
    assert Latest("counters", "a-1:last_decline", at, at, "a-1:last_decline") in writes
    assert any(isinstance(w, Append) and w.view == "history" for w in writes)


GOOD = {"event_id": "e", "customer_id": "c", "type": "page_view", "timestamp": T.isoformat()}


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{oops", "not valid JSON"),
        (b"[1, 2]", "event must be a JSON object"),
        (orjson.dumps({**GOOD, "type": "teleport"}), "type"),
        (orjson.dumps({**GOOD, "timestamp": "soon"}), "timestamp"),
        (orjson.dumps({**GOOD, "customer_id": ""}), "customer_id"),
        (orjson.dumps({**GOOD, "price": "free"}), "price"),
        (orjson.dumps({k: v for k, v in GOOD.items() if k != "event_id"}), "event_id"),
        (b"x" * 300_000, "over the"),
        ("not bytes", "value is not bytes"),
    ],
)
def test_bad_events_are_refused_with_a_reason(raw: object, reason: str) -> None:
    event, why = decode_event(raw, ClickstreamEvent)
    assert event is None
    assert (why is not None and why.startswith(reason)) or reason in (why or "")


def test_a_good_event_decodes() -> None:
    event, why = decode_event(orjson.dumps(GOOD), ClickstreamEvent)
    assert why is None and event is not None and event.type == "page_view"


# Consent, event time, message key and recency: what a stream event may say, and what
# its writes may change whatever order events arrive in.

NOW = float(int(time.time()))  # whole seconds: exact through an ISO 8601 text


def iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat()


def consent_raw(attributes: dict[str, object]) -> bytes:
    body = {"event_id": "e", "customer_id": "c", "type": "consent", "timestamp": iso(NOW)}
    return orjson.dumps({**body, "attributes": attributes})


@pytest.mark.parametrize(
    ("attributes", "field"),
    [
        ({"channel": "marketing", "granted": "false"}, "attributes.granted"),
        ({"channel": "marketing", "granted": "no"}, "attributes.granted"),
        ({"channel": "marketing", "granted": "0"}, "attributes.granted"),
        ({"channel": "marketing", "granted": "withdrawn"}, "attributes.granted"),
        ({"channel": "marketing", "granted": "true"}, "attributes.granted"),
        ({"channel": "marketing", "granted": 0}, "attributes.granted"),
        ({"channel": "marketing", "granted": 1}, "attributes.granted"),
        ({"channel": "marketing", "granted": None}, "attributes.granted"),
        ({"channel": "marketing", "granted": [True]}, "attributes.granted"),
        ({"channel": "marketing"}, "attributes.granted"),
        ({"channel": "Email ", "granted": True}, "attributes.channel"),
        ({"channel": "Email", "granted": True}, "attributes.channel"),
        ({"channel": "e-mail", "granted": True}, "attributes.channel"),
        ({"channel": "", "granted": True}, "attributes.channel"),
        ({"channel": "x" * 33, "granted": True}, "attributes.channel"),
        ({"channel": 7, "granted": True}, "attributes.channel"),
        ({"granted": False}, "attributes.channel"),
    ],
)
def test_an_unclear_consent_is_refused_naming_the_field(
    attributes: dict[str, object], field: str
) -> None:
    event, why = decode_event(consent_raw(attributes), CrmEvent)
    assert event is None and why is not None and why.startswith(f"{field}: "), why


@pytest.mark.parametrize(("channel", "granted"), [("marketing", False), ("email", True)])
def test_a_clear_consent_sets_the_flag_the_demo_rules_read(channel: str, granted: bool) -> None:
    event, why = decode_event(consent_raw({"channel": channel, "granted": granted}), CrmEvent)
    assert event is not None, why
    flag = f"consent_{channel}"
    assert crm_writes(event).writes == (Latest("profile", flag, granted, NOW, f"{flag}_at"),)
    rules = (Path(__file__).parents[2] / "nba/demo/catalogue/rules.yaml").read_text()
    assert f"customer.{flag} == true" in rules


def click_raw(timestamp: object, customer: str = "c") -> bytes:
    return orjson.dumps(
        {"event_id": "e", "customer_id": customer, "type": "page_view", "timestamp": timestamp}
    )


class Ahead(NamedTuple):
    """A time this many seconds after the clock when the test runs."""

    seconds: float


@pytest.mark.parametrize(
    ("timestamp", "reason"),
    [
        (Ahead(MAX_CLOCK_SKEW_S + 60), "ahead of the clock"),
        (Ahead(2 * 3600), "ahead of the clock"),
        (Ahead(86400), "ahead of the clock"),
        (Ahead(50 * 365 * 86400), "ahead of the clock"),
        (12345, "before 2000-01-01"),
        (0, "before 2000-01-01"),
        ("1970-01-01T03:25:45Z", "before 2000-01-01"),
        ("1999-12-31T23:59:59Z", "before 2000-01-01"),
    ],
)
def test_an_event_time_out_of_bounds_is_refused(timestamp: object, reason: str) -> None:
    if isinstance(timestamp, Ahead):  # from the clock as the test runs, not as it was collected
        timestamp = iso(time.time() + timestamp.seconds)
    for model in (ClickstreamEvent, CrmEvent, ResponseEvent):
        event, why = decode_event(click_raw(timestamp), model)
        assert event is None and why is not None, model
        if model is ClickstreamEvent:
            assert why.startswith("timestamp: ") and reason in why, why


@pytest.mark.parametrize(
    "timestamp",
    [iso(NOW + 60), iso(NOW), iso(NOW - 3 * 3600), iso(NOW - 400 * 86400), int(NOW) - 60],
)
def test_an_event_time_within_the_skew_or_in_the_past_is_accepted(timestamp: object) -> None:
    event, why = decode_event(click_raw(timestamp), ClickstreamEvent)
    assert event is not None, why


def test_a_posted_response_from_the_future_is_refused_at_the_api() -> None:
    body = {"action_id": "a-1", "customer_id": "c", "outcome": "click"}
    ResponseRequest.model_validate({**body, "timestamp": iso(NOW)})
    with pytest.raises(ValidationError, match="ahead of the clock"):
        ResponseRequest.model_validate({**body, "timestamp": iso(NOW + 7200)})


@pytest.mark.parametrize(
    ("key", "customer", "problem"),
    [
        (b"c-1", "c-1", None),
        (None, "c-1", "message key: missing"),
        (b"", "c-1", "message key: '' is not the customer_id 'c-1'"),
        (b"c-2", "c-1", "message key: 'c-2' is not the customer_id 'c-1'"),
        (b"C-1", "c-1", "message key: 'C-1' is not"),
        (b"c-1 ", "c-1", "message key: 'c-1 ' is not"),
    ],
)
def test_the_message_key_must_be_the_customer_id(
    key: bytes | None, customer: str, problem: str | None
) -> None:
    found = key_problem(key, customer)
    assert (found is None) if problem is None else (found or "").startswith(problem), found


def test_backfilled_events_are_left_out_of_the_freshness_metric() -> None:
    times = [NOW - 1.0, NOW - 3600.0, NOW - FRESHNESS_HORIZON_S - 1, 12345.0]
    assert fresh_times(times, NOW) == [NOW - 1.0, NOW - 3600.0]


def view_raw(n: int, at: float, kind: str, category: str | None) -> bytes:
    body = {"event_id": f"e{n}", "customer_id": "c", "type": kind, "timestamp": iso(at)}
    return orjson.dumps(body | ({"category": category} if category else {}))


def behaviour_after(raws: list[bytes]) -> tuple[dict[str, bytes], dict[str, Any]]:
    """The stored behaviour hash (raw) and its features, after the events in this order."""
    store = MemoryFeatureStore()
    events = [decode_event(raw, ClickstreamEvent)[0] for raw in raws]
    asyncio.run(store.apply([clickstream_writes(e) for e in events if e is not None]))
    state = asyncio.run(store.fetch("c"))
    return store.hashes["c"]["behaviour"], state.behaviour


ORDER_DEPENDENT = {"_ts", "session_pages", "session_start"}  # the visit follows arrival


@settings(max_examples=150, deadline=None)
@given(
    events=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=6 * 3600),  # seconds ago
            st.sampled_from(["page_view", "product_view", "search"]),
            st.sampled_from([None, "shoes", "bags", "coats"]),
        ),
        min_size=1,
        max_size=12,
        unique_by=lambda e: e[0],
    ),
    data=st.data(),
)
def test_any_arrival_order_leaves_the_recency_features_at_the_latest_event(
    events: list[tuple[int, str, str | None]], data: st.DataObject
) -> None:
    now = time.time()
    raws = [view_raw(n, now - ago, kind, cat) for n, (ago, kind, cat) in enumerate(events)]
    arrived = data.draw(st.permutations(raws))
    stored, features = behaviour_after(arrived)
    in_time_order, _ = behaviour_after(
        [raw for _, raw in sorted(zip(events, raws, strict=True), key=lambda p: -p[0][0])]
    )
    latest = min(ago for ago, _, _ in events)
    assert orjson.loads(stored["last_seen"]) == pytest.approx(now - latest, abs=1e-3)
    viewed = [(ago, cat) for ago, kind, cat in events if cat and kind != "search"]
    if viewed:
        assert features["last_category"] == min(viewed)[1]
    else:
        assert "last_category" not in features
    # counters and window counters count every event wherever it arrives
    keep = {k: v for k, v in stored.items() if k not in ORDER_DEPENDENT}
    assert keep == {k: v for k, v in in_time_order.items() if k not in ORDER_DEPENDENT}


def test_a_late_event_counts_but_does_not_set_the_recency_features() -> None:
    now = time.time()
    _, features = behaviour_after(
        [
            view_raw(1, now - 5, "page_view", "shoes"),
            view_raw(2, now - 3 * 3600, "page_view", "bags"),
        ]
    )
    assert features["last_category"] == "shoes"
    assert features["minutes_since_seen"] < 1.0
    assert features["views_total"] == 2 and features["page_view_5m"] == pytest.approx(1.0)
    assert features["session_pages"] == 1  # the late page belongs to an earlier visit
    assert features["views_24h_bags"] == pytest.approx(1.0)


async def test_a_late_consent_does_not_undo_a_later_withdrawal() -> None:
    store = MemoryFeatureStore()
    events = [
        CrmEvent.model_validate(
            {
                "event_id": f"e{n}",
                "customer_id": "c",
                "type": kind,
                "timestamp": iso(at),
                "attributes": attributes,
            }
        )
        for n, (kind, at, attributes) in enumerate(
            [
                ("consent", NOW - 60, {"channel": "marketing", "granted": False}),
                ("consent", NOW - 3600, {"channel": "marketing", "granted": True}),
                ("order", NOW - 30, {"amount": 10}),
                ("order", NOW - 86400, {"amount": 5}),
                ("complaint", NOW - 20, {"status": "closed"}),
                ("complaint", NOW - 7200, {"status": "open"}),
            ]
        )
    ]
    await store.apply([crm_writes(e) for e in events])
    profile = (await store.fetch("c")).profile
    assert profile["consent_marketing"] is False
    assert profile["last_order_at"] == pytest.approx(NOW - 30, abs=1e-3)
    assert profile["orders"] == 2 and profile["revenue"] == 15
    assert profile["open_complaint"] is False
    assert profile["last_complaint_at"] == pytest.approx(NOW - 20, abs=1e-3)
