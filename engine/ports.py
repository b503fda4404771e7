"""The interfaces the decision pipeline depends on; other packages implement them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from engine.domain import CustomerState
from engine.writes import EventWrites, ImpactResponse


class Reservation(Protocol):
    """Room needed in one contact cap: fewer than ``count`` stamps in ``window_s``."""

    @property
    def field(self) -> str: ...

    @property
    def count(self) -> int: ...

    @property
    def window_s(self) -> float: ...


class FeatureStore(Protocol):
    """Online store of everything known about a customer. ``fetch``, ``history``,
    ``erase`` and ``ping`` raise :class:`~engine.errors.StoreUnavailable` when the store
    is away; the decision's ``fetch_many`` and ``reserve_many`` raise what they meet
    (any failure there means the fallback)."""

    async def fetch(self, customer_id: str) -> CustomerState:
        """Every view of one customer in one round trip."""
        ...

    async def fetch_many(
        self, customer_ids: Sequence[str], budget_s: float | None = None
    ) -> list[CustomerState]:
        """Many customers in one round trip (batches); :class:`TimeoutError` after
        ``budget_s`` (None: no bound of the caller's)."""
        ...

    async def reserve_many(
        self,
        asks: Sequence[tuple[str, Sequence[Reservation], float]],
        budget_s: float | None = None,
    ) -> list[bool]:
        """Many reservations (customer, caps, now) in one round trip, each atomic;
        :class:`TimeoutError` after ``budget_s`` (None: no bound of the caller's)."""
        ...

    async def apply(self, batch: Sequence[EventWrites]) -> list[bool]:
        """Apply each event's writes atomically; False where the event was seen before."""
        ...

    async def reserve(
        self, customer_id: str, reservations: Sequence[Reservation], now: float
    ) -> bool:
        """Atomically: if every cap has room, stamp each with ``now`` and say True."""
        ...

    async def history(self, customer_id: str, limit: int = 20) -> list[dict[str, Any]]:
        """Recent responses and CRM contacts, complaints and orders, newest first (the
        engine's own contacts are in the counters: see ``rules.contact``)."""
        ...

    async def erase(self, customer_id: str) -> int:
        """Delete every key of the customer; returns how many keys went."""
        ...

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...


class Scorer(Protocol):
    """A model bound to one catalogue: scores all candidates of a decision in one call."""

    version: str

    def score(
        self,
        customer: Mapping[str, Any],
        context: Mapping[str, Any],
        action_indices: np.ndarray,
    ) -> np.ndarray:
        """Propensities (probability of a positive response), one per candidate."""
        ...


class EventSink(Protocol):
    """Where the API hands events (responses, decision logs, ingested events) to streams."""

    async def send(self, topic: str, key: str, value: bytes) -> None:
        """Hand over and wait until the broker has it (a 202 means it is kept)."""
        ...

    def send_nowait(self, topic: str, key: str, value: bytes) -> None:
        """Queue for delivery in the background; never blocks the caller."""
        ...

    async def close(self) -> None: ...


class CatalogueAdmin(Protocol):
    """Changes to the catalogue over the API: validated, stored, live in every process."""

    async def put(self, action_id: str, payload: Any) -> Any:
        """Validate and store an action; returns the new live catalogue."""
        ...

    async def delete(self, action_id: str) -> Any: ...


class ImpactStore(Protocol):
    """Counters behind the uplift report: decisions and responders per action, channel
    and group."""

    async def record_decisions(self, chosen: Sequence[tuple[str, str, str]]) -> None: ...

    async def record_responses(self, responses: Sequence[ImpactResponse]) -> list[bool]: ...

    async def cells(self) -> list[Any]: ...

    async def close(self) -> None: ...
