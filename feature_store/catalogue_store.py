"""Catalogue changes made over the API, kept in Redis so that every API process (and
every restart) sees the same catalogue: one hash of overrides (an action as JSON, or
``null`` for a deleted one), a revision counter bumped with each change, and a bounded
change history. The keys share one hash tag (one slot on a Redis Cluster), so a change is
one Lua call: atomic on a single server and on a cluster alike (redis-py's cluster
pipeline runs a MULTI by starting a thread and an event loop per queued command, which
breaks on a client not yet connected; a script has no such trap)."""

from __future__ import annotations

import time
from typing import Any

import orjson
from redis.typing import EncodableT

from feature_store.connect import Client, LazyRedis, Script, unavailable

HISTORY_KEEP = 1000
# KEYS: overrides, revision, history; ARGV: action id, action (JSON), entry (JSON), keep
CHANGE = Script(
    """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local revision = redis.call('INCR', KEYS[2])
redis.call('LPUSH', KEYS[3], ARGV[3])
redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[4]) - 1)
return revision
"""
)


class RedisCatalogueStore:
    def __init__(self, client: Client | LazyRedis, prefix: str = "nba:") -> None:
        self.redis = client if isinstance(client, LazyRedis) else LazyRedis.of(client)
        tag = f"{prefix}{{catalogue}}"
        self.overrides_key = f"{tag}:overrides"
        self.revision_key = f"{tag}:revision"
        self.history_key = f"{tag}:history"

    @classmethod
    def from_url(cls, url: str, prefix: str = "nba:") -> RedisCatalogueStore:
        return cls(LazyRedis(url, decode_responses=False, socket_timeout=5.0), prefix)

    @property
    def client(self) -> Client:
        """The client, once the first call connected it."""
        return self.redis.client

    async def revision(self) -> int:
        raw = await (await self.redis()).get(self.revision_key)
        return int(raw) if raw else 0

    async def overrides(self) -> tuple[int, dict[str, dict[str, Any] | None]]:
        """The revision and every override, read together.

        One non-transactional pipeline, revision first: a change in between makes the
        overrides newer than the revision, never older, so a reader that reloads when the
        revision moves never keeps stale overrides.
        """
        with unavailable():  # a change over the API answers 503, not 500
            pipe = (await self.redis()).pipeline(transaction=False)
            pipe.get(self.revision_key)
            pipe.hgetall(self.overrides_key)
            revision, raw = await pipe.execute()
        return int(revision or 0), {k.decode(): orjson.loads(v) for k, v in raw.items()}

    async def change(self, action_id: str, action: dict[str, Any] | None, note: str) -> int:
        """Store (or, with ``None``, delete) an action; returns the new revision."""
        entry = {
            "action_id": action_id,
            "op": "delete" if action is None else "put",
            "at": time.time(),
            "note": note,
            "action": action,
        }
        keys = [self.overrides_key, self.revision_key, self.history_key]
        args: list[EncodableT] = [
            action_id,
            orjson.dumps(action),
            orjson.dumps(entry),
            HISTORY_KEEP,
        ]
        with unavailable():
            return int(await CHANGE.run(await self.redis(), keys, args))

    async def history(self, action_id: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        raw = await (await self.redis()).lrange(self.history_key, 0, HISTORY_KEEP - 1)
        entries = [orjson.loads(item) for item in raw]
        if action_id is not None:
            entries = [e for e in entries if e["action_id"] == action_id]
        return entries[:limit]

    async def close(self) -> None:
        await self.redis.aclose()
