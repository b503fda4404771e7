"""The stream events of contract §4, validated at the edge (API or stream worker).

An event that fails validation is not an error to raise but a value to route: the
worker sends it to the dead-letter topic with :func:`describe` of the problem. Over
HTTP it is the caller's to fix: :func:`posted_event` refuses it with a field-named 422.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from engine.domain import Outcome, Scalar
from engine.errors import BadRequest
from engine.validation import Worded, first_error

# printable ASCII but for the braces, which delimit the store's per-customer hash tag
CUSTOMER_ID = r"^[\x21-\x7a\x7c\x7e]{1,128}$"
CUSTOMER_ID_RULE = "must be 1 to 128 printable ASCII characters without braces"
CustomerId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=128, pattern=CUSTOMER_ID),
    Worded(CUSTOMER_ID_RULE),
]
EventId = Annotated[str, StringConstraints(min_length=1, max_length=128)]

MAX_AMOUNT = 1e12  # sums of amounts stay finite doubles in the store
# a JSON number (not a boolean, not a string), finite and within the store's bounds
Amount = Annotated[float, Field(ge=-MAX_AMOUNT, le=MAX_AMOUNT, strict=True, allow_inf_nan=False)]

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
    price: Annotated[Amount, Field(ge=0)] | None = None
    query: Annotated[str, StringConstraints(max_length=256)] | None = None


class CrmEvent(_Event):
    type: Literal["profile", "contact", "order", "complaint", "consent"]
    attributes: dict[
        Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,63}$")],
        Annotated[
            Scalar | list[Scalar] | None,
            Worded("must be a string, number, boolean, null or a list of those"),
        ],
    ] = Field(default_factory=dict, max_length=256)


class ResponseEvent(_Event):
    decision_id: Annotated[str, StringConstraints(max_length=128)] | None = None
    action_id: Annotated[str, StringConstraints(pattern=r"^[a-z0-9-]{1,64}$")]
    outcome: Outcome
    value: Amount | None = None
    channel: str | None = None


def event_topic(payload: Any) -> str | None:
    """Which topic an ingested event belongs on, by its ``type``."""
    kind = payload.get("type") if isinstance(payload, dict) else None
    if kind in CLICKSTREAM_TYPES:
        return "clickstream"
    if kind in CRM_TYPES:
        return "crm"
    return None


def posted_event(item: Any, place: int | None = None) -> tuple[str, ClickstreamEvent | CrmEvent]:
    """An event sent over HTTP, validated, with the topic its ``type`` routes it to; else a
    :class:`BadRequest` naming the field, placed as in a batch: ``type`` for a lone event,
    ``1.type`` for the second of an array, ``1`` for an item that is not an object.

    >>> posted_event([], place=1)
    Traceback (most recent call last):
    ...
    engine.errors.BadRequest: 1: must be a JSON object
    """

    def refused(field: str, message: str) -> BadRequest:
        where = ".".join(p for p in (None if place is None else str(place), field) if p)
        return BadRequest(f"{where or 'body'}: {message}", where or "body")

    if not isinstance(item, dict):
        lone = "" if place is not None else " or an array of JSON objects"
        raise refused("", f"must be a JSON object{lone}")
    if "type" not in item:
        raise refused("type", "Field required")
    name = event_topic(item)
    if name is None:
        raise refused("type", f"must be one of {', '.join(CLICKSTREAM_TYPES + CRM_TYPES)}")
    model = ClickstreamEvent if name == "clickstream" else CrmEvent
    try:
        return name, model.model_validate(item)
    except ValidationError as exc:
        raise refused(*first_error(exc, "")) from None


def describe(exc: ValidationError) -> str:
    """A short reason naming the first bad field, for the dead-letter topic and 422s."""
    field, message = first_error(exc, "event")
    return f"{field}: {message}"
