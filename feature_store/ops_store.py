"""Where stream workers publish their figures, so the API's ``/metrics`` can export
them (workers run no web server). One hash per worker, expiring if it stops; the keys
share the ``{ops}`` hash tag. A hash outlives its last report by :data:`TTL_S`, so a
hung or stopped worker's figures stay readable for that long and the API can show how
old they are (``nba_stream_worker_report_age_seconds``) instead of dropping them.
Publishing is one Lua call (replace and expire at once), on a single server and on a
Redis Cluster alike."""

from __future__ import annotations

from feature_store.connect import Client, LazyRedis, Script

TTL_S = 600
# KEYS: the worker's hash; ARGV: TTL in seconds, then field, value, field, value, ...
PUBLISH = Script(
    """
redis.call('DEL', KEYS[1])
if #ARGV > 1 then
  redis.call('HSET', KEYS[1], unpack(ARGV, 2))
  redis.call('EXPIRE', KEYS[1], ARGV[1])
end
return 1
"""
)


class RedisOpsStore:
    def __init__(self, client: Client | LazyRedis, prefix: str = "nba:") -> None:
        self.redis = client if isinstance(client, LazyRedis) else LazyRedis.of(client)
        self.prefix = f"{prefix}{{ops}}:worker:"

    @classmethod
    def from_url(cls, url: str, prefix: str = "nba:") -> RedisOpsStore:
        return cls(LazyRedis(url, decode_responses=True, socket_timeout=2.0), prefix)

    @property
    def client(self) -> Client:
        """The client, once the first call connected it."""
        return self.redis.client

    async def publish(self, worker: str, fields: dict[str, float]) -> None:
        args: list[str | int] = [TTL_S]
        for name, value in fields.items():
            args += [name, repr(float(value))]
        client = await self.redis()
        await PUBLISH.run(client, [self.prefix + worker], args)
        await client.sadd(self.prefix + "names", worker)  # so readers never scan the keyspace

    async def workers(self) -> dict[str, dict[str, float]]:
        """Every worker's figures; on a cluster every master is scanned."""
        client = await self.redis()
        names = sorted(_text(n) for n in await client.smembers(self.prefix + "names"))
        keys = [self.prefix + name for name in names]
        if not keys:
            return {}
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.hgetall(key)
        out: dict[str, dict[str, float]] = {}
        for key, raw in zip(keys, await pipe.execute(), strict=True):
            if raw:
                out[key[len(self.prefix) :]] = {_text(k): float(v) for k, v in raw.items()}
            else:  # the worker stopped and its figures expired
                await client.srem(self.prefix + "names", key[len(self.prefix) :])
        return out

    async def close(self) -> None:
        await self.redis.aclose()


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
