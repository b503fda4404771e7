"""Redis online store: one hash per view, every key of a customer under one hash tag.

Layout (prefix ``nba:``): ``nba:{<customer>}:profile`` and ``:behaviour`` hold
JSON-encoded fields, ``:counters`` numeric fields, ``:history`` a bounded list of JSON
records, ``:seen:<event id>`` the idempotency markers. The hash tag keeps one
customer in one Redis Cluster slot, so one pipelined round trip reads all views and
one Lua call applies one event's writes atomically. The same code runs on a single
server and on a cluster (see :mod:`feature_store.connect`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from importlib import resources
from typing import Any

import orjson
from redis.asyncio.cluster import RedisCluster

from engine.domain import MAX_STAMPS, CustomerState
from engine.features import FeatureConfig, load_features
from engine.ports import Reservation
from engine.writes import EventWrites
from feature_store.apply_codec import ApplyCodec
from feature_store.connect import Client, LazyRedis, Script, scan_slot, unavailable
from feature_store.decoding import ViewDecoder
from feature_store.wire import SPIN_S, WireAddress, WireConnection

SCRIPTS = resources.files("feature_store")
APPLY_ONCE = Script(SCRIPTS.joinpath("apply_once.lua").read_text())
RESERVE = Script(SCRIPTS.joinpath("reserve.lua").read_text())


class RedisFeatureStore:
    """Async store on redis-py with hiredis; no sync twin (STYLE 3).

    ``client`` is a connected client, or a :class:`LazyRedis` that finds out on first use
    whether the URL is a single server or a cluster.
    """

    def __init__(
        self,
        client: Client | LazyRedis,
        prefix: str = "nba:",
        dedupe_ttl_s: int = 7 * 86400,
        features: FeatureConfig | None = None,
        read_spin_s: float = SPIN_S,
    ) -> None:
        self.redis = client if isinstance(client, LazyRedis) else LazyRedis.of(client)
        self._wire: WireConnection | None = None
        self._wire_decided = False
        self.read_spin_s = read_spin_s  # see feature_store.wire: 0 turns spinning off
        self.prefix = prefix
        self.dedupe_ttl_s = dedupe_ttl_s
        self.features = features or load_features()
        self.decoder = ViewDecoder(self.features)
        views = self.features.views
        self.view_ttls = ",".join(
            str(int(v.ttl_days * 86400))
            for v in (views.profile, views.behaviour, views.contacts, views.contacts)
        )
        self.codec = ApplyCodec(prefix, dedupe_ttl_s, self.view_ttls)

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> RedisFeatureStore:
        return cls(LazyRedis(url, decode_responses=False, socket_timeout=5.0), **kwargs)

    @property
    def client(self) -> Client:
        """The client, once the first call connected it."""
        return self.redis.client

    def key(self, customer_id: str, view: str) -> str:
        return f"{self.prefix}{{{customer_id}}}:{view}"

    async def fetch(self, customer_id: str) -> CustomerState:
        """One customer (the customer view); Redis away raises :class:`StoreUnavailable`.
        Decisions read with :meth:`fetch_many`, whose every failure means the fallback."""
        with unavailable():
            return (await self.fetch_many([customer_id]))[0]

    async def fetch_many(
        self, customer_ids: Sequence[str], budget_s: float | None = None
    ) -> list[CustomerState]:
        """Every view of every customer in one pipelined round trip.

        On a single server the read goes over :class:`WireConnection` (the decision's hot
        path), whose budget counts replies that came in time however late the event loop
        reads them; on a cluster through redis-py, which routes each customer's slot.
        """
        if not customer_ids:
            return []
        wire = await self._wire_connection()
        raw: list[Any]
        if wire is not None:
            commands = [
                ("HGETALL", self.key(customer_id, view))
                for customer_id in customer_ids
                for view in _READ_VIEWS
            ]
            replies = await wire.execute(commands, spin=True, budget_s=budget_s)
            raw = [_pairs(reply) for reply in replies]
        else:
            pipe = (await self.redis()).pipeline(transaction=False)
            for customer_id in customer_ids:
                for view in _READ_VIEWS:
                    pipe.hgetall(self.key(customer_id, view))
            async with asyncio.timeout(budget_s):
                raw = await pipe.execute()
        rows = [
            (customer_id, raw[3 * n], raw[3 * n + 1], raw[3 * n + 2])
            for n, customer_id in enumerate(customer_ids)
        ]
        return self.decoder.states(rows, time.time())

    async def _wire_connection(self) -> WireConnection | None:
        """The wire connection if the URL names a single server, decided once."""
        if self._wire_decided:
            return self._wire
        client = await self.redis()
        address = WireAddress.parse(self.redis.url)
        if address is not None and not isinstance(client, RedisCluster):
            self._wire = WireConnection(address, spin_s=self.read_spin_s)
        self._wire_decided = True
        return self._wire

    async def reserve_many(
        self,
        asks: Sequence[tuple[str, Sequence[Reservation], float]],
        budget_s: float | None = None,
    ) -> list[bool]:
        if not asks:
            return []
        calls = [
            ([self.key(customer_id, "counters")], _reserve_args(reservations, now))
            for customer_id, reservations, now in asks
        ]
        wire = await self._wire_connection()  # as the read's: redis-py's pipeline costs
        replies = await RESERVE.run_many(wire or await self.redis(), calls, budget_s)
        return [bool(r) for r in replies]

    async def apply(self, batch: Sequence[EventWrites]) -> list[bool]:
        """One script call per customer of the batch (see :mod:`feature_store.apply_codec`),
        all in one pipeline; the answer is per event, in the batch's order."""
        if not batch:
            return []
        calls, positions = self.codec.calls(batch, time.time())
        wire = await self._wire_connection()
        replies = await APPLY_ONCE.run_many(wire or await self.redis(), calls)
        applied = [False] * len(batch)
        for where, reply in zip(positions, replies, strict=True):
            for n, new in zip(where, reply, strict=True):
                applied[n] = bool(new)
        return applied

    async def reserve(
        self, customer_id: str, reservations: Sequence[Reservation], now: float
    ) -> bool:
        return (await self.reserve_many([(customer_id, reservations, now)]))[0]

    async def history(self, customer_id: str, limit: int = 20) -> list[dict[str, Any]]:
        with unavailable():
            client = await self.redis()
            raw = await client.lrange(self.key(customer_id, "history"), 0, limit - 1)
        return [orjson.loads(item) for item in raw]

    async def erase(self, customer_id: str) -> int:
        """Delete every key of the customer (on a cluster: scan the master of its slot)."""
        with unavailable():
            client = await self.redis()
            pattern = f"{self.prefix}{{{_glob_escape(customer_id)}}}:*"
            keys = await scan_slot(client, self.key(customer_id, "profile"), pattern)
            if not keys:
                return 0
            return int(await client.delete(*keys))

    async def ping(self) -> bool:
        """Every master answers (one, on a single server)."""
        with unavailable():
            client = await self.redis()
            if isinstance(client, RedisCluster):
                return bool(await client.ping(target_nodes=RedisCluster.PRIMARIES))
            return bool(await client.ping())

    async def close(self) -> None:
        if self._wire is not None:
            self._wire.close()
        await self.redis.aclose()


_READ_VIEWS = ("profile", "behaviour", "counters")


def _pairs(reply: Any) -> dict[bytes, bytes]:
    """HGETALL's flat RESP2 array as the mapping redis-py would give; an error reply
    (a key of the wrong type) raises, as it would there."""
    if isinstance(reply, Exception):
        raise reply
    it = iter(reply)
    return dict(zip(it, it, strict=True))


def _reserve_args(reservations: Sequence[Reservation], now: float) -> list[str | float]:
    args: list[str | float] = [repr(now), MAX_STAMPS]
    for r in reservations:
        args += [r.field, r.count, repr(float(r.window_s))]
    return args


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
