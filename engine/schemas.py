"""Request bodies of the HTTP API (contract §3), as pydantic models for the OpenAPI
schema and for field-named 422s.

JSON types are kept as sent: ``limit`` takes an integer, not ``"3"`` or ``true``;
``explain`` a boolean, not ``"yes"`` or ``1``; numbers are finite. A context value that
is not a scalar is one error at its key (:class:`engine.validation.Worded`). All of it is
checked inside pydantic-core, so the fast path's parse costs what it did.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
    ValidationError,
)

from engine.domain import Outcome
from engine.errors import BadRequest
from engine.events import Amount, CustomerId, EventTime
from engine.validation import Worded, first_error

# strict members: a string too long for the first is not read as a number by another
ContextValue = Annotated[
    Annotated[str, StringConstraints(max_length=256, strict=True)]
    | StrictBool
    | StrictInt
    | Annotated[float, Field(strict=True, allow_inf_nan=False)],
    Worded("must be a string of at most 256 characters, a finite number or a boolean"),
]
Name = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]


class DecisionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    customer_id: CustomerId
    channel: Name
    placement: Name | None = None
    context: dict[Annotated[str, StringConstraints(min_length=1, max_length=64)], ContextValue] = (
        Field(default_factory=dict, max_length=64)
    )
    limit: int = Field(default=1, ge=1, le=20, strict=True)
    explain: bool = Field(default=False, strict=True)


class ResponseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    decision_id: Annotated[str, StringConstraints(max_length=128)] | None = None
    action_id: Annotated[str, StringConstraints(pattern=r"^[a-z0-9-]{1,64}$")]
    customer_id: CustomerId
    outcome: Outcome
    value: Amount | None = None
    timestamp: EventTime | None = None
    channel: Name | None = None
    event_id: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = None


class BatchRequest(BaseModel):
    """Items are validated one by one, so one bad item, even one that is not an object,
    is answered in its place with an error naming its field."""

    model_config = ConfigDict(extra="forbid")
    requests: list[Any] = Field(
        min_length=1,
        max_length=1000,
        json_schema_extra={"items": {"type": "object", "additionalProperties": True}},
    )


def batch_item(item: Any) -> DecisionRequest | BadRequest:
    """One item of a batch, or the error answered in its place; its field is named
    within the item (``limit``), or is ``request`` for the item as a whole."""
    if not isinstance(item, dict):
        return BadRequest("request: must be a JSON object", "request")
    try:
        return DecisionRequest.model_validate(item)
    except ValidationError as exc:
        field, message = first_error(exc, "request")
        return BadRequest(f"{field}: {message}", field)
