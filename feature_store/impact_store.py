"""Counters behind the uplift report, kept by the stream worker.

One hash holds, per (action, channel, group), the decisions that chose the action and,
per outcome, the decisions that got at least one such response, with the sum of
response values and of their squares: the report is O(actions), never a log scan.
Every key shares the ``{impact}`` hash tag (one slot on a Redis Cluster), so a response
is counted once per decision, atomically, by one Lua call.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

from redis.typing import EncodableT

from engine.errors import StoredDataError
from engine.writes import RESPONSE_OUTCOMES, ImpactResponse
from feature_store.connect import Call, Client, LazyRedis, Script, unavailable

IMPACT = Script(resources.files("feature_store").joinpath("impact.lua").read_text())
MARKER_TTL_S = 30 * 86400


@dataclass(frozen=True, slots=True)
class Cell:
    """The raw counters of one (action, channel, group)."""

    action_id: str
    channel: str
    group: str
    decisions: int
    responders: dict[str, int]
    value_sum: float
    value_sum_sq: float


class RedisImpactStore:
    def __init__(self, client: Client | LazyRedis, prefix: str = "nba:") -> None:
        self.redis = client if isinstance(client, LazyRedis) else LazyRedis.of(client)
        self.counts_key = f"{prefix}{{impact}}:counts"
        self.marker_prefix = f"{prefix}{{impact}}:seen:"

    @classmethod
    def from_url(cls, url: str, prefix: str = "nba:") -> RedisImpactStore:
        return cls(LazyRedis(url, decode_responses=False, socket_timeout=5.0), prefix)

    @property
    def client(self) -> Client:
        """The client, once the first call connected it."""
        return self.redis.client

    async def record_decisions(self, chosen: Sequence[tuple[str, str, str]]) -> None:
        """(action, channel, group) of every action a decision chose."""
        if not chosen:
            return
        totals: dict[str, int] = {}
        for action, channel, group in chosen:
            field = f"{action}|{channel}|{group}|decisions"
            totals[field] = totals.get(field, 0) + 1
        pipe = (await self.redis()).pipeline(transaction=False)
        for field, amount in totals.items():
            pipe.hincrby(self.counts_key, field, amount)
        await pipe.execute()

    async def record_responses(self, responses: Sequence[ImpactResponse]) -> list[bool]:
        """Responders once per (decision, action, outcome); each response's value once
        per event id, so a batch retried after a failure counts nothing twice."""
        if not responses:
            return []
        calls: list[Call] = []
        for r in responses:
            base = f"{r.action_id}|{r.channel}|{r.group}"
            marker = f"{self.marker_prefix}{r.decision_id}|{r.action_id}"
            args: list[EncodableT] = [
                MARKER_TTL_S,
                r.outcome,
                base,
                repr(float(r.value)),
                r.event_id,
            ]
            calls.append(([self.counts_key, marker], args))
        return [bool(x) for x in await IMPACT.run_many(await self.redis(), calls)]

    async def cells(self) -> list[Cell]:
        """Every cell; a field that cannot be a counter raises :class:`StoredDataError`."""
        with unavailable():  # Redis away: a 503 at the API, one line from the CLI
            raw = await (await self.redis()).hgetall(self.counts_key)
        found: dict[tuple[str, str, str], dict[str, float]] = {}
        for key, value in raw.items():
            cell, metric, number = _entry(key, value)
            found.setdefault(cell, {})[metric] = number
        return [
            Cell(
                action,
                channel,
                group,
                decisions=int(m.get("decisions", 0)),
                responders={o: int(m.get(o, 0)) for o in RESPONSE_OUTCOMES},
                value_sum=m.get("value", 0.0),
                value_sum_sq=m.get("value_sq", 0.0),
            )
            for (action, channel, group), m in sorted(found.items())
        ]

    async def close(self) -> None:
        await self.redis.aclose()


def _entry(key: bytes | str, value: bytes | str) -> tuple[tuple[str, str, str], str, float]:
    """(action, channel, group), metric and number of one field of the counts hash.

    The field is ``action|channel|group|metric``: an action id has no ``|``, a group and a
    metric neither, so a channel taken from a caller's decision id may hold one.
    """
    text = key.decode(errors="replace") if isinstance(key, bytes) else str(key)
    parts = text.rsplit("|", 2)
    action, _, channel = parts[0].partition("|")
    if len(parts) != 3 or not action or not channel:
        raise StoredDataError(f"uplift counter {text!r} is not named action|channel|group|metric")
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    counts = parts[2] not in ("value", "value_sq")
    if not math.isfinite(number) or (counts and not number.is_integer()):
        kind = "an integer" if counts else "a finite number"
        raise StoredDataError(f"uplift counter {text!r} is not {kind}: {value!r}")
    return (action, channel, parts[1]), parts[2], number
