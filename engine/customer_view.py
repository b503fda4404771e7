"""The routes that read or write the feature store themselves (the customer view,
erasure): how long they wait for it, and the answers' schemas for the OpenAPI document.

A decision has a fallback when the store is away; these routes have none, so a store
that is down or hung is a prompt 503 naming it, with a Retry-After
(:class:`~engine.errors.StoreUnavailable`), and one warning line in the log: not a 500
after a socket's 5 s timeout.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, Field

from engine.errors import StoreUnavailable

__all__ = ["STORE_WAIT_S", "Contact", "CustomerView", "ErrorBody", "from_store"]

log = logging.getLogger("nba.api")
T = TypeVar("T")
# How long a route waits for the store before its 503: a few of its round trips under
# load, and more than the longest channel budget the customer view's previews wait.
STORE_WAIT_S = 0.25


async def from_store(call: Awaitable[T], wait_s: float | None, route: str) -> T:
    """``call``'s result, or :class:`StoreUnavailable` if the store is away or has not
    answered within ``wait_s`` (None: the store's own socket timeout bounds each call)."""
    try:
        async with asyncio.timeout(wait_s):
            return await call
    except TimeoutError:
        wait_ms = round((wait_s or 0.0) * 1000)
        error = StoreUnavailable(f"the feature store (Redis) did not answer within {wait_ms} ms")
    except StoreUnavailable as exc:
        error = exc
    log.warning("%s: %s", route, error)  # one line: the answer is the 503, not a traceback
    raise error


class Contact(BaseModel):
    """One contact of the customer: see ``rules.contact.ContactRules.contacts``."""

    at: float = Field(description="when, in seconds since the epoch")
    source: Literal["decision", "impression"] = Field(
        description="decision: counted in contact caps when decided (the action is not "
        "stored); impression: reported shown by the caller"
    )
    channel: str | None
    action_id: str | None
    caps: list[str] = Field(description="the contact caps that hold this time")


class CustomerView(BaseModel):
    """``GET /v1/customers/{id}``: the single customer view."""

    customer_id: str
    known: bool
    profile: dict[str, Any]
    behaviour: dict[str, Any]
    counters: dict[str, Any]
    contacts: list[Contact] = Field(description="recent contacts, newest first")
    history: list[dict[str, Any]] = Field(
        description="recent responses and CRM contacts, complaints and orders, newest first"
    )
    next_best_actions: dict[str, list[dict[str, Any]]] = Field(
        description="per channel, the actions a decision would choose now"
    )


class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None = None


class ErrorBody(BaseModel):
    """Every error answer of the API."""

    error: ErrorDetail
