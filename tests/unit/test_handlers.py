from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from engine.events import ClickstreamEvent, CrmEvent, ResponseEvent
from engine.writes import Append, Increment, Put
from streams.handlers import clickstream_writes, crm_writes, response_writes
from streams.worker import decode_event

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
    assert crm_writes(event).writes == (Put("profile", "consent_marketing", False),)


def test_page_view_counts_the_category() -> None:
    event = ClickstreamEvent(
        event_id="e3", customer_id="c1", type="page_view", category="shoes", timestamp=T
    )
    writes = clickstream_writes(event).writes
    assert Increment("behaviour", "views_shoes") in writes
    assert Put("behaviour", "last_category", "shoes") in writes


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
    assert Put("counters", "a-1:last_decline", T.timestamp()) in writes
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
