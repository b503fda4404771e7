"""Writes as data: what a stream event changes, expressed so a store can apply it.

Stream handlers turn events into these values and never touch Redis; the store applies
each event's writes atomically and at most once per ``event_id``. Tests assert on the
writes without a store, and every store backend applies the same writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

View = Literal["profile", "behaviour", "counters", "history"]


@dataclass(frozen=True, slots=True)
class Put:
    """Set one field of a view to a value (JSON-encoded by the store)."""

    view: View
    field: str
    value: object


@dataclass(frozen=True, slots=True)
class Increment:
    """Add to a numeric field of a view."""

    view: View
    field: str
    amount: float = 1.0


@dataclass(frozen=True, slots=True)
class Append:
    """Push a record onto a bounded list view (newest first), keeping ``keep`` records."""

    view: View
    value: object
    keep: int = 50


@dataclass(frozen=True, slots=True)
class Stamp:
    """Add a time to a field's list of recent times, keeping the newest ``keep``:
    exact counts over sliding windows (contact caps) in bounded memory."""

    view: View
    field: str
    at: float
    keep: int = 50


@dataclass(frozen=True, slots=True)
class WindowCount:
    """Count one event at ``at`` in a counter kept over sliding windows; ``layout`` is
    the windows' bucket widths and slot count (``feature_store.windows``). The field
    name holds ``{w}`` where the window's label goes: ``views_{w}_shoes``."""

    view: View
    field: str
    at: float
    layout: str


@dataclass(frozen=True, slots=True)
class Session:
    """Pages in the current visit: reset when ``gap_s`` passed since ``last_seen``."""

    view: View
    field: str
    at: float
    gap_s: float


@dataclass(frozen=True, slots=True)
class Latest:
    """Set ``field`` to ``value`` as of event time ``at``, unless a later event set it:
    field ``clock`` holds the event time of the value kept (``field`` itself when the
    value is that time, as for ``last_seen``). Recency features ("last …") so move only
    forward in event time, whatever order events arrive in; the check and the write are
    one atomic step of the store.

    >>> Latest("behaviour", "last_category", "shoes", 1_800_000_000.0, "last_category_at")
    Latest(view='behaviour', field='last_category', value='shoes', at=1800000000.0, clock='last_category_at')
    """  # noqa: E501

    view: View
    field: str
    value: object
    at: float
    clock: str


Write = Put | Increment | Append | Stamp | WindowCount | Session | Latest


@dataclass(frozen=True, slots=True)
class EventWrites:
    """All writes one event causes; applied together or not at all, once per event_id."""

    customer_id: str
    event_id: str
    writes: tuple[Write, ...]


RESPONSE_OUTCOMES = ("click", "accept", "convert")


@dataclass(frozen=True, slots=True)
class ImpactResponse:
    """A response to one of the engine's decisions, for the uplift counters."""

    decision_id: str
    action_id: str
    channel: str
    group: str
    outcome: str
    value: float
    event_id: str
