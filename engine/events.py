"""The stream events of contract §4, validated at the edge (API or stream worker).

An event that fails validation is not an error to raise but a value to route: the
worker sends it to the dead-letter topic with :func:`describe` of the problem.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from engine.domain import Outcome, Scalar

# printable ASCII but for the braces, which delimit the store's per-customer hash tag
CUSTOMER_ID = r"^[\x21-\x7a\x7c\x7e]{1,128}$"
CustomerId = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=CUSTOMER_ID)]
EventId = Annotated[str, StringConstraints(min_length=1, max_length=128)]

MAX_AMOUNT = 1e12  # sums of amounts stay finite doubles in the store

CLICKSTREAM_TYPES = ("page_view", "product_view", "add_to_cart", "search", "purchase")
CRM_TYPES = ("profile", "contact", "order", "complaint", "consent")


class _Event(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    event_id: EventId
    customer_id: CustomerId
    timestamp: datetime


class ClickstreamEvent(_Event):
    type: Literal["page_view", "product_view", "add_to_cart", "search", "purchase"]
    category: Annotated[str, StringConstraints(max_length=64)] | None = None
    product_id: Annotated[str, StringConstraints(max_length=128)] | None = None
    price: float | None = Field(default=None, ge=0, le=MAX_AMOUNT)
    query: Annotated[str, StringConstraints(max_length=256)] | None = None


class CrmEvent(_Event):
    type: Literal["profile", "contact", "order", "complaint", "consent"]
    attributes: dict[
        Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,63}$")],
        Scalar | list[Scalar] | None,
    ] = Field(default_factory=dict, max_length=256)


class ResponseEvent(_Event):
    decision_id: Annotated[str, StringConstraints(max_length=128)] | None = None
    action_id: Annotated[str, StringConstraints(pattern=r"^[a-z0-9-]{1,64}$")]
    outcome: Outcome
    value: float | None = Field(default=None, ge=-MAX_AMOUNT, le=MAX_AMOUNT)
    channel: str | None = None


def event_topic(payload: Any) -> str | None:
    """Which topic an ingested event belongs on, by its ``type``."""
    kind = payload.get("type") if isinstance(payload, dict) else None
    if kind in CLICKSTREAM_TYPES:
        return "clickstream"
    if kind in CRM_TYPES:
        return "crm"
    return None


def describe(exc: ValidationError) -> str:
    """A short reason naming the first bad field, for the dead-letter topic and 422s."""
    error = exc.errors()[0]
    field = ".".join(str(p) for p in error["loc"]) or "event"
    return f"{field}: {error['msg']}"
