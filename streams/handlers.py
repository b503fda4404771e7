"""Turn validated stream events into writes as data (no I/O here).

Behaviour counters are running totals in this version; the windowed aggregates
(5 min … 7 d) replace them in the feature-store work.

Events arrive out of order (a late event, a replay): counters and the windows an event
falls in count it whenever it comes, but what is "last" (``last_seen``,
``last_category``, ``last_order_at``, a consent flag, ``<action>:last_<outcome>``) is a
:class:`engine.writes.Latest`, kept only if no later event set it.
"""

from __future__ import annotations

from engine.domain import MAX_STAMPS
from engine.events import ClickstreamEvent, CrmEvent, ResponseEvent
from engine.features import FeatureConfig, field_layout, load_features
from engine.writes import (
    Append,
    EventWrites,
    Increment,
    Latest,
    Put,
    Session,
    Stamp,
    WindowCount,
    Write,
)

VIEW_TYPES = frozenset({"page_view", "product_view"})


class ClickstreamFeatures:
    """Clickstream events into behaviour writes, by the feature definitions."""

    def __init__(self, features: FeatureConfig | None = None) -> None:
        self.config = (features or load_features()).views.behaviour
        self.layout = field_layout(self.config.widths, self.config.buckets)
        self.counted = frozenset(self.config.counts)
        self.per_category = frozenset(self.config.per_category)
        self.gap_s = self.config.session_gap_minutes * 60

    def __call__(self, event: ClickstreamEvent) -> EventWrites:
        ts = event.timestamp.timestamp()
        writes: list[Write] = []
        if event.type in VIEW_TYPES:
            writes.append(Session("behaviour", "session_pages", ts, self.gap_s))
        writes.append(Latest("behaviour", "last_seen", ts, ts, "last_seen"))
        if event.type in self.counted:
            writes.append(WindowCount("behaviour", f"{event.type}_{{w}}", ts, self.layout))
        if event.type in VIEW_TYPES:
            writes.append(Increment("behaviour", "views_total"))
            if event.category:
                writes.append(Increment("behaviour", f"views_{event.category}"))
                writes.append(
                    Latest("behaviour", "last_category", event.category, ts, "last_category_at")
                )
        if event.category and event.type in self.per_category:
            field = f"views_{{w}}_{event.category}"
            writes.append(WindowCount("behaviour", field, ts, self.layout))
        if event.type == "add_to_cart":
            writes.append(Increment("behaviour", "cart_adds"))
            writes.append(Increment("behaviour", "cart_open"))
        elif event.type == "search":
            writes.append(Increment("behaviour", "searches"))
        elif event.type == "purchase":
            writes.append(Increment("behaviour", "purchases"))
            writes.append(Put("behaviour", "cart_open", 0))
            if event.price is not None:
                writes.append(Increment("behaviour", "spend", event.price))
        return EventWrites(event.customer_id, event.event_id, tuple(writes))


clickstream_writes = ClickstreamFeatures()


def crm_writes(event: CrmEvent) -> EventWrites:
    ts = event.timestamp.timestamp()
    attrs = event.attributes
    writes: list[Write] = []
    if event.type == "profile":
        writes += [Put("profile", key, value) for key, value in attrs.items()]
    elif event.type == "consent":  # channel and granted validated (engine.events.Consent)
        consent = event.consent()
        flag = f"consent_{consent.channel}"
        writes.append(Latest("profile", flag, consent.granted, ts, f"{flag}_at"))
    elif event.type == "complaint":
        is_open = attrs.get("status", "open") == "open"
        writes.append(Latest("profile", "open_complaint", is_open, ts, "last_complaint_at"))
    elif event.type == "order":
        writes.append(Increment("profile", "orders"))
        amount = attrs.get("amount")
        if isinstance(amount, int | float) and not isinstance(amount, bool):
            writes.append(Increment("profile", "revenue", float(amount)))
        writes.append(Latest("profile", "last_order_at", ts, ts, "last_order_at"))
    if event.type in ("contact", "complaint", "order"):
        writes.append(Append("history", {"type": event.type, "at": ts, **attrs}))
    return EventWrites(event.customer_id, event.event_id, tuple(writes))


def response_writes(event: ResponseEvent) -> EventWrites:
    ts = event.timestamp.timestamp()
    action, outcome = event.action_id, event.outcome
    writes: list[Write] = [
        Increment("counters", f"{action}:{outcome}"),
        Latest("counters", f"{action}:last_{outcome}", ts, ts, f"{action}:last_{outcome}"),
        Increment("counters", f"all:{outcome}"),
        Append(
            "history",
            {
                "type": "response",
                "at": ts,
                "action_id": action,
                "outcome": outcome,
                "decision_id": event.decision_id,
                "channel": event.channel,
            },
        ),
    ]
    if outcome == "impression":
        writes.append(Stamp("counters", f"{action}:imp_ts", ts, MAX_STAMPS))
    if event.value is not None:
        writes.append(Increment("counters", f"{action}:value", event.value))
    return EventWrites(event.customer_id, event.event_id, tuple(writes))
