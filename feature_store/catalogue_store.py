"""Catalogue changes made over the API, kept in Redis so that every API process (and
every restart) sees the same catalogue: one hash of overrides (an action as JSON, or
``null`` for a deleted one), a revision counter bumped with each change, and a bounded
change history. The keys share one hash tag, so a change is one transaction, also on a
Redis Cluster."""

from __future__ import annotations

import time
from typing import Any

import orjson
import redis.asyncio as aioredis

HISTORY_KEEP = 1000


class RedisCatalogueStore:
    def __init__(self, client: aioredis.Redis, prefix: str = "nba:") -> None:
        self.client = client
        tag = f"{prefix}{{catalogue}}"
        self.overrides_key = f"{tag}:overrides"
        self.revision_key = f"{tag}:revision"
        self.history_key = f"{tag}:history"

    @classmethod
    def from_url(cls, url: str, prefix: str = "nba:") -> RedisCatalogueStore:
        return cls(aioredis.from_url(url, decode_responses=False, socket_timeout=5.0), prefix)

    async def revision(self) -> int:
        raw = await self.client.get(self.revision_key)
        return int(raw) if raw else 0

    async def overrides(self) -> tuple[int, dict[str, dict[str, Any] | None]]:
        """The revision and every override, read together."""
        pipe = self.client.pipeline(transaction=True)
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
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(self.overrides_key, action_id, orjson.dumps(action))
        pipe.incr(self.revision_key)
        pipe.lpush(self.history_key, orjson.dumps(entry))
        pipe.ltrim(self.history_key, 0, HISTORY_KEEP - 1)
        _, revision, _, _ = await pipe.execute()
        return int(revision)

    async def history(self, action_id: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        raw = await self.client.lrange(self.history_key, 0, HISTORY_KEEP - 1)
        entries = [orjson.loads(item) for item in raw]
        if action_id is not None:
            entries = [e for e in entries if e["action_id"] == action_id]
        return entries[:limit]

    async def close(self) -> None:
        await self.client.aclose()
