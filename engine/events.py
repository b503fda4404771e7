"""The stream events of contract §4, validated at the edge (API or stream worker).

An event that fails validation is not an error to raise but a value to route: the
worker sends it to the dead-letter topic with :func:`describe` of the problem. Over
HTTP it is the caller's to fix: :func:`posted_event` refuses it with a field-named 422.

Event time is bounded: a ``timestamp`` more than :data:`MAX_CLOCK_SKEW_S` ahead of the
receiver's clock is refused (it would move the window counters' head and the recency
features into the future), and so is one before :data:`EARLIEST_EVENT` (not a real event
time: ``12345`` is read as seconds since 1970). A late or old event inside those bounds is
applied: counters and the windows it falls in count it, and the recency features ("last
…") keep the latest event time (:class:`engine.writes.Latest`).

A ``consent`` event's attributes are :class:`Consent`: ``channel`` a clean name and
``granted`` a JSON boolean, both required. Ambiguous consent is refused, never guessed.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

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

# how far ahead of this machine's clock an event's time may be: the producers' clocks
# drift a little; more than this is a wrong clock, and is refused
MAX_CLOCK_SKEW_S = 300.0
# no event of this system happened before; earlier is a wrong unit or a placeholder
EARLIEST_EVENT = datetime(2000, 1, 1, tzinfo=UTC)


def event_time_problem(at: float, now: float) -> str | None:
    """Why an event time (seconds since 1970) is refused at ``now``, if it is.

    >>> event_time_problem(1_800_000_600.0, now=1_800_000_000.0)
    'is 600 s ahead of the clock, more than the 300 s of clock skew allowed'
    >>> event_time_problem(12345.0, now=1_800_000_000.0)
    'is before 2000-01-01, not a real event time (a number is read as seconds since 1970)'
    >>> event_time_problem(1_799_990_000.0, now=1_800_000_000.0) is None
    True
    """
    if at > now + MAX_CLOCK_SKEW_S:
        return (
            f"is {at - now:.0f} s ahead of the clock, more than the "
            f"{MAX_CLOCK_SKEW_S:.0f} s of clock skew allowed"
        )
    if at < EARLIEST_EVENT.timestamp():
        return (
            f"is before {EARLIEST_EVENT:%Y-%m-%d}, not a real event time "
            "(a number is read as seconds since 1970)"
        )
    return None


def _in_bounds(value: datetime) -> datetime:
    problem = event_time_problem(value.timestamp(), time.time())
    if problem is not None:
        raise PydanticCustomError("event_time", problem)
    return value


# an event's time, within the bounds above (checked against the clock when validated)
EventTime = Annotated[datetime, AfterValidator(_in_bounds)]

CONSENT_CHANNEL = r"^[a-z][a-z0-9_]{0,31}$"
CONSENT_CHANNEL_RULE = (
    "must be a lower-case name of letters, digits and underscores, "
    "starting with a letter, at most 32 characters"
)


class Consent(BaseModel):
    """What a ``consent`` event's attributes must hold: the profile flag it sets is
    ``consent_<channel>`` (``consent_marketing``, ``consent_email``, which rules read)."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    channel: Annotated[
        str, StringConstraints(pattern=CONSENT_CHANNEL), Worded(CONSENT_CHANNEL_RULE)
    ]
    granted: Annotated[bool, Field(strict=True), Worded("must be true or false (a JSON boolean)")]


class _Event(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    event_id: EventId
    customer_id: CustomerId
    timestamp: EventTime


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

    @model_validator(mode="after")
    def _consent(self) -> CrmEvent:
        if self.type == "consent":
            try:
                Consent.model_validate(self.attributes)
            except ValidationError as exc:  # located inside ``attributes``
                details = [
                    InitErrorDetails(
                        type=PydanticCustomError(e["type"], e["msg"]),
                        loc=("attributes", *e["loc"]),
                        input=e["input"],
                    )
                    for e in exc.errors(include_url=False)
                ]
                raise ValidationError.from_exception_data(type(self).__name__, details) from None
        return self

    def consent(self) -> Consent:
        """The attributes of a ``consent`` event (validated with the event)."""
        return Consent.model_validate(self.attributes)


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
