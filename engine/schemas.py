"""Request bodies of the HTTP API (contract §3), as pydantic models for the OpenAPI
schema and for field-named 422s."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from engine.domain import Outcome
from engine.events import MAX_AMOUNT, CustomerId

ContextValue = Annotated[str, StringConstraints(max_length=256)] | bool | int | float
Name = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]


class DecisionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    customer_id: CustomerId
    channel: Name
    placement: Name | None = None
    context: dict[Annotated[str, StringConstraints(min_length=1, max_length=64)], ContextValue] = (
        Field(default_factory=dict, max_length=64)
    )
    limit: int = Field(default=1, ge=1, le=20)
    explain: bool = False


class ResponseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    decision_id: Annotated[str, StringConstraints(max_length=128)] | None = None
    action_id: Annotated[str, StringConstraints(pattern=r"^[a-z0-9-]{1,64}$")]
    customer_id: CustomerId
    outcome: Outcome
    value: float | None = Field(default=None, ge=-MAX_AMOUNT, le=MAX_AMOUNT)
    timestamp: datetime | None = None
    channel: Name | None = None
    event_id: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = None


class BatchRequest(BaseModel):
    """Items are validated one by one, so one bad item is answered in its place."""

    model_config = ConfigDict(extra="forbid")
    requests: list[dict[str, Any]] = Field(min_length=1, max_length=1000)
