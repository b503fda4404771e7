"""An in-process store with the Redis store's behaviour, for unit tests and tools that
need no server. It keeps values encoded as Redis does and decodes them with the same
:class:`ViewDecoder`, and passes the same contract suite as :class:`RedisFeatureStore`."""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from typing import Any

import orjson

from engine.domain import MAX_STAMPS, CustomerState
from engine.features import FeatureConfig, load_features
from engine.ports import Reservation
from engine.writes import (
    Append,
    EventWrites,
    Increment,
    Latest,
    Put,
    Session,
    Stamp,
    WindowCount,
)
from feature_store import windows
from feature_store.decoding import TIMESTAMP, ViewDecoder


def _number(raw: bytes | None) -> float:
    value = orjson.loads(raw) if raw else 0
    return float(value) if isinstance(value, int | float) else 0.0


def _json(value: float) -> bytes:
    return orjson.dumps(int(value) if float(value).is_integer() else value)


class MemoryFeatureStore:
    def __init__(self, features: FeatureConfig | None = None) -> None:
        self.decoder = ViewDecoder(features or load_features())
        self.hashes: dict[str, dict[str, dict[str, bytes]]] = {}
        self.lists: dict[str, list[Any]] = {}
        self.seen: set[tuple[str, str]] = set()
        self.fail: Exception | None = None  # set by a test to simulate an outage

    def _check(self) -> None:
        if self.fail is not None:
            raise self.fail

    def _views(self, customer_id: str) -> dict[str, dict[str, bytes]]:
        return self.hashes.setdefault(customer_id, {"profile": {}, "behaviour": {}, "counters": {}})

    async def fetch(self, customer_id: str) -> CustomerState:
        return (await self.fetch_many([customer_id]))[0]

    async def fetch_many(
        self, customer_ids: Sequence[str], budget_s: float | None = None
    ) -> list[CustomerState]:
        """``budget_s`` is not needed here: nothing waits."""
        self._check()
        now = time.time()
        out = []
        for customer_id in customer_ids:
            views = self.hashes.get(customer_id, {"profile": {}, "behaviour": {}, "counters": {}})
            out.append(
                self.decoder.state(
                    customer_id, views["profile"], views["behaviour"], views["counters"], now=now
                )
            )
        return out

    async def apply(self, batch: Sequence[EventWrites]) -> list[bool]:
        self._check()
        results = []
        for event in batch:
            marker = (event.customer_id, event.event_id)
            if marker in self.seen:
                results.append(False)
                continue
            self.seen.add(marker)
            views = self._views(event.customer_id)
            for write in event.writes:
                if isinstance(write, Append):
                    records = self.lists.setdefault(event.customer_id, [])
                    records.insert(0, copy.deepcopy(write.value))
                    del records[write.keep :]
                    continue
                target = views[write.view]
                if isinstance(write, Put):
                    target[write.field] = orjson.dumps(write.value)
                elif isinstance(write, Increment):
                    target[write.field] = _json(_number(target.get(write.field)) + write.amount)
                elif isinstance(write, Stamp):
                    raw = target.get(write.field)
                    times = sorted([*(orjson.loads(raw) if raw else []), write.at])
                    target[write.field] = orjson.dumps(times[-write.keep :])
                elif isinstance(write, WindowCount):
                    target[write.field] = windows.update(
                        target.get(write.field), write.at, write.layout
                    )
                elif isinstance(write, Session):
                    last = target.get("last_seen")
                    if last is not None and abs(write.at - _number(last)) <= write.gap_s:
                        target[write.field] = _json(_number(target.get(write.field)) + 1)
                    elif last is None or write.at > _number(last):
                        target[write.field] = b"1"
                        target["session_start"] = orjson.dumps(write.at)
                    # else a late page of an earlier visit: not in this one
                elif isinstance(write, Latest):
                    kept = target.get(write.clock)
                    if kept is None or write.at >= _number(kept):  # never back in event time
                        target[write.field] = orjson.dumps(write.value)
                        if write.clock != write.field:
                            target[write.clock] = orjson.dumps(write.at)
                target[TIMESTAMP] = repr(time.time()).encode()
            results.append(True)
        return results

    async def reserve(
        self, customer_id: str, reservations: Sequence[Reservation], now: float
    ) -> bool:
        self._check()
        counters = self._views(customer_id)["counters"]
        live = {}
        for r in reservations:
            raw = counters.get(r.field)
            kept = [t for t in (orjson.loads(raw) if raw else []) if t > now - r.window_s]
            if len(kept) >= r.count:
                return False
            live[r.field] = kept
        for name, kept in live.items():
            counters[name] = orjson.dumps([*kept, now][-MAX_STAMPS:])
        return True

    async def reserve_many(
        self,
        asks: Sequence[tuple[str, Sequence[Reservation], float]],
        budget_s: float | None = None,
    ) -> list[bool]:
        """``budget_s`` is not needed here: nothing waits."""
        return [await self.reserve(c, r, now) for c, r, now in asks]

    async def history(self, customer_id: str, limit: int = 20) -> list[dict[str, Any]]:
        self._check()
        return copy.deepcopy(self.lists.get(customer_id, [])[:limit])

    async def erase(self, customer_id: str) -> int:
        self._check()
        gone = sum(1 for v in self.hashes.pop(customer_id, {}).values() if v)
        gone += 1 if self.lists.pop(customer_id, None) else 0
        self.seen = {m for m in self.seen if m[0] != customer_id}
        return gone

    async def ping(self) -> bool:
        self._check()
        return True

    async def close(self) -> None:
        return None
