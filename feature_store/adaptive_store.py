"""Sharing the adaptive model's parameters: the stream worker (one writer) appends each
micro-batch's delta to a Redis stream and stores a whole snapshot now and then; every API
process loads the snapshot, then applies the deltas after it, in order, exactly once
(the stream id is the cursor). Keys share the ``{adaptive}`` hash tag."""

from __future__ import annotations

from typing import Any

from feature_store.connect import LazyRedis

STREAM_MAXLEN = 20_000


class RedisAdaptiveStore:
    def __init__(self, client: LazyRedis, prefix: str = "nba:") -> None:
        self.lazy = client
        self.stream = f"{prefix}{{adaptive}}:deltas"
        self.snapshot_key = f"{prefix}{{adaptive}}:snapshot"

    @classmethod
    def from_url(cls, url: str, prefix: str = "nba:") -> RedisAdaptiveStore:
        return cls(LazyRedis(url, decode_responses=False, socket_timeout=5.0), prefix)

    async def append(self, delta: bytes) -> str:
        client = await self.lazy()
        entry = await client.xadd(
            self.stream, {b"d": delta}, maxlen=STREAM_MAXLEN, approximate=True
        )
        return _text(entry)

    async def save_snapshot(self, state: bytes, cursor: str) -> None:
        client = await self.lazy()
        await client.hset(self.snapshot_key, mapping={b"state": state, b"cursor": cursor})

    async def snapshot(self) -> tuple[bytes | None, str]:
        client = await self.lazy()
        raw: list[Any] = await client.hmget(self.snapshot_key, [b"state", b"cursor"])
        state, cursor = raw[0], raw[1]
        return state, (_text(cursor) if cursor else "0-0")

    async def deltas_after(self, cursor: str, count: int = 500) -> list[tuple[str, bytes]]:
        client = await self.lazy()
        found: Any = await client.xrange(self.stream, min=f"({cursor}", count=count)
        return [(_text(entry), bytes(fields[b"d"])) for entry, fields in found or ()]

    async def oldest(self) -> str | None:
        client = await self.lazy()
        first: Any = await client.xrange(self.stream, count=1)
        return _text(first[0][0]) if first else None

    async def close(self) -> None:
        await self.lazy.aclose()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
