"""Where stream workers publish their figures, so the API's ``/metrics`` can export
them (workers run no web server). One hash per worker, expiring if it stops."""

from __future__ import annotations

import redis.asyncio as aioredis

TTL_S = 30


class RedisOpsStore:
    def __init__(self, client: aioredis.Redis, prefix: str = "nba:") -> None:
        self.client = client
        self.prefix = f"{prefix}{{ops}}:worker:"

    @classmethod
    def from_url(cls, url: str, prefix: str = "nba:") -> RedisOpsStore:
        return cls(aioredis.from_url(url, decode_responses=True, socket_timeout=2.0), prefix)

    async def publish(self, worker: str, fields: dict[str, float]) -> None:
        key = self.prefix + worker
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(key)
        pipe.hset(key, mapping={k: repr(float(v)) for k, v in fields.items()})
        pipe.expire(key, TTL_S)
        await pipe.execute()

    async def workers(self) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        async for key in self.client.scan_iter(match=self.prefix + "*", count=100):
            raw = await self.client.hgetall(key)
            out[str(key)[len(self.prefix) :]] = {str(k): float(v) for k, v in raw.items()}
        return out

    async def close(self) -> None:
        await self.client.aclose()
