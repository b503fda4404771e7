"""An in-process store with the Redis store's behaviour, for unit tests and tools that
need no server. It passes the same contract suite as :class:`RedisFeatureStore`."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from engine.domain import MAX_STAMPS, CustomerState
from engine.ports import Reservation
from engine.writes import Append, EventWrites, Increment, Put, Stamp


class MemoryFeatureStore:
    def __init__(self) -> None:
        self.views: dict[str, dict[str, Any]] = {}
        self.seen: set[tuple[str, str]] = set()
        self.fail: Exception | None = None  # set by a test to simulate an outage

    def _check(self) -> None:
        if self.fail is not None:
            raise self.fail

    def _customer(self, customer_id: str) -> dict[str, Any]:
        return self.views.setdefault(
            customer_id, {"profile": {}, "behaviour": {}, "counters": {}, "history": []}
        )

    async def fetch(self, customer_id: str) -> CustomerState:
        self._check()
        views = self.views.get(customer_id)
        if views is None:
            return CustomerState(customer_id)
        return CustomerState(
            customer_id,
            profile=copy.deepcopy(views["profile"]),
            behaviour=copy.deepcopy(views["behaviour"]),
            counters=dict(views["counters"]),
            known=True,
        )

    async def fetch_many(self, customer_ids: Sequence[str]) -> list[CustomerState]:
        return [await self.fetch(c) for c in customer_ids]

    async def reserve_many(
        self, asks: Sequence[tuple[str, Sequence[Reservation], float]]
    ) -> list[bool]:
        return [await self.reserve(c, r, now) for c, r, now in asks]

    async def apply(self, batch: Sequence[EventWrites]) -> list[bool]:
        self._check()
        results = []
        for event in batch:
            marker = (event.customer_id, event.event_id)
            if marker in self.seen:
                results.append(False)
                continue
            self.seen.add(marker)
            views = self._customer(event.customer_id)
            for write in event.writes:
                if isinstance(write, Put):
                    views[write.view][write.field] = copy.deepcopy(write.value)
                elif isinstance(write, Increment):
                    target = views[write.view]
                    target[write.field] = float(target.get(write.field, 0.0)) + write.amount
                elif isinstance(write, Stamp):
                    target = views[write.view]
                    times = sorted([*target.get(write.field, []), write.at])
                    target[write.field] = times[-write.keep :]
                elif isinstance(write, Append):
                    records = views[write.view]
                    records.insert(0, copy.deepcopy(write.value))
                    del records[write.keep :]
            results.append(True)
        return results

    async def reserve(
        self, customer_id: str, reservations: Sequence[Reservation], now: float
    ) -> bool:
        self._check()
        counters = self._customer(customer_id)["counters"]
        live = {}
        for r in reservations:
            kept = [t for t in counters.get(r.field, []) if t > now - r.window_s]
            if len(kept) >= r.count:
                return False
            live[r.field] = kept
        for name, kept in live.items():
            counters[name] = [*kept, now][-MAX_STAMPS:]
        return True

    async def history(self, customer_id: str, limit: int = 20) -> list[dict[str, Any]]:
        self._check()
        return copy.deepcopy(self.views.get(customer_id, {}).get("history", [])[:limit])

    async def erase(self, customer_id: str) -> int:
        self._check()
        views = self.views.pop(customer_id, None)
        self.seen = {m for m in self.seen if m[0] != customer_id}
        return 0 if views is None else sum(1 for v in views.values() if v)

    async def ping(self) -> bool:
        self._check()
        return True

    async def close(self) -> None:
        return None
