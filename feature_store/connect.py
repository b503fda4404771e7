"""One ``NBA_REDIS_URL`` for a single Redis server and for a Redis Cluster.

The URL (``redis://``, ``rediss://``, ``unix://``) does not say which it is, so the first
call asks the server: ``INFO cluster`` reports ``cluster_enabled:1`` on a cluster node,
and the client becomes a :class:`~redis.asyncio.cluster.RedisCluster` seeded with that
node; otherwise the plain client that asked is kept. That costs one round trip, once per
:class:`LazyRedis`; afterwards a call only awaits the cached client.

Everything else is written once for both: every key of a customer (or of the catalogue,
the impact counters, the ops figures) shares one hash tag, hence one slot, so a
non-transactional pipeline, a Lua script or a ``SCAN`` with the tagged pattern concerns
one node. :class:`Script` runs Lua through pipelined ``EVALSHA`` on either client, loads
the script on every master when one of them does not have it, and re-runs only the calls
that were refused.

A unix socket reaches one server only: a cluster node behind ``unix://`` is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Iterator, Sequence
from typing import Any, TypeAlias

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import ClusterDownError, NoScriptError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.typing import EncodableT

from engine.errors import StoreUnavailable
from feature_store.wire import WireConnection

__all__ = ["Call", "Client", "LazyRedis", "Script", "connect", "scan_slot", "unavailable"]

Client: TypeAlias = aioredis.Redis | RedisCluster

# Redis away, not a wrong command: redis-py's connection, socket-timeout and cluster-down
# errors, and OSError (the wire connection's ConnectionError, a refused socket, a timeout)
UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, ClusterDownError, OSError)


@contextlib.contextmanager
def unavailable() -> Iterator[None]:
    """Redis found down or hung inside the block becomes the engine's
    :class:`StoreUnavailable` (a 503 at the API), the backend's error as its cause."""
    try:
        yield
    except UNAVAILABLE as exc:
        raise StoreUnavailable("the feature store (Redis) is unavailable") from exc


async def connect(url: str, decode_responses: bool = False, **kwargs: Any) -> Client:
    """The client for ``url``: a :class:`RedisCluster` if the server runs in cluster mode.

    ``kwargs`` (``socket_timeout``, ...) go to either client.
    """
    single = aioredis.from_url(url, decode_responses=decode_responses, **kwargs)
    try:
        info = await single.info("cluster")
    except ResponseError:  # INFO refused (ACL, renamed command): treat as one server
        return single
    except BaseException:
        await single.aclose()
        raise
    if not int(info.get("cluster_enabled", 0)):
        return single
    await single.aclose()
    if url.startswith("unix:"):
        raise ValueError(f"{url} is a Redis Cluster node: give its redis:// address")
    cluster = RedisCluster.from_url(url, decode_responses=decode_responses, **kwargs)
    try:
        await cluster.initialize()  # here, in the caller's loop, not inside a first command
    except BaseException:
        await cluster.aclose()
        raise
    return cluster


class LazyRedis:
    """A store's client, made by :func:`connect` on the first ``await lazy()``.

    Stores are built without I/O (``from_url`` is synchronous and Redis may not be up
    yet); a failed detection is not remembered, the next call tries again.
    """

    def __init__(self, url: str, decode_responses: bool = False, **kwargs: Any) -> None:
        self.url = url
        self.decode_responses = decode_responses
        self.kwargs = kwargs
        self._client: Client | None = None
        self._connecting = asyncio.Lock()

    @classmethod
    def of(cls, client: Client) -> LazyRedis:
        """A client made elsewhere, used as it is."""
        lazy = cls("")
        lazy._client = client
        return lazy

    @property
    def client(self) -> Client:
        """The client, once a call has connected it."""
        if self._client is None:
            raise RuntimeError(f"not connected to {self.url} yet")
        return self._client

    async def __call__(self) -> Client:
        if self._client is not None:
            return self._client
        async with self._connecting:  # concurrent first calls share one detection
            if self._client is None:
                self._client = await connect(self.url, self.decode_responses, **self.kwargs)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()


async def scan_slot(client: Client, key: str, pattern: str, count: int = 500) -> list[Any]:
    """The keys matching ``pattern`` that live with ``key`` (same hash tag).

    On a cluster only the master serving ``key``'s slot is scanned (every master, if
    the client knows no owner for the slot).
    """
    if isinstance(client, RedisCluster):
        node: ClusterNode | None = client.get_node_from_key(key)
        targets = node if node is not None else RedisCluster.PRIMARIES
        return [k async for k in client.scan_iter(match=pattern, count=count, target_nodes=targets)]
    return [k async for k in client.scan_iter(match=pattern, count=count)]


Call: TypeAlias = tuple[Sequence[str], Sequence[EncodableT]]


class Script:
    """A Lua script run with ``EVALSHA`` on a single server or a cluster.

    Calls go out in one non-transactional pipeline (on a cluster, one per master, sent
    concurrently). A call refused with ``NOSCRIPT`` (a restarted or flushed server, a
    master that never saw the script) is re-run after ``SCRIPT LOAD``, which a cluster
    client sends to every master; calls that ran are not run twice.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.sha = hashlib.sha1(text.encode()).hexdigest()

    async def run(self, client: Client, keys: Sequence[str], args: Sequence[EncodableT]) -> Any:
        return (await self.run_many(client, [(keys, args)]))[0]

    async def run_many(
        self,
        client: Client | WireConnection,
        calls: Sequence[Call],
        budget_s: float | None = None,
    ) -> list[Any]:
        """``client`` may also be the minimal connection of a single server (the stream
        worker's writes, where redis-py's pipeline cost a fifth of the worker's CPU).
        ``budget_s``: how long each round trip may take (see ``WireConnection.execute``)."""
        results = await self._send(client, calls, budget_s)
        missing = [n for n, r in enumerate(results) if isinstance(r, NoScriptError)]
        if missing:
            async with asyncio.timeout(budget_s):
                if isinstance(client, WireConnection):
                    await client.execute([("SCRIPT", "LOAD", self.text)])
                else:
                    await client.script_load(self.text)
            again = await self._send(client, [calls[n] for n in missing], budget_s)
            for n, result in zip(missing, again, strict=True):
                results[n] = result
        for result in results:
            if isinstance(result, Exception):
                raise result
        return results

    async def _send(
        self, client: Client | WireConnection, calls: Sequence[Call], budget_s: float | None
    ) -> list[Any]:
        """The replies, an error reply in its place as redis-py's exception."""
        if isinstance(client, WireConnection):
            commands = [("EVALSHA", self.sha, len(keys), *keys, *args) for keys, args in calls]
            replies = await client.execute(commands, budget_s=budget_s)
            return [_as_redis_error(r) for r in replies]
        pipe = client.pipeline(transaction=False)
        for keys, args in calls:
            # not pipe.evalsha(): redis-py refuses that name in cluster pipelines
            pipe.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)
        async with asyncio.timeout(budget_s):
            return list(await pipe.execute(raise_on_error=False))


def _as_redis_error(reply: Any) -> Any:
    if not isinstance(reply, Exception):
        return reply
    text = str(reply)
    return NoScriptError(text) if text.startswith("NOSCRIPT") else ResponseError(text)
