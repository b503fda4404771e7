"""Whether the embedded servers are up, and the topics the engine needs: Redis answers
PING and has loaded its data; the broker answers a metadata request; missing topics are
created and waited for. Used by :mod:`engine.embedded`, and for an external broker too."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

import redis
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, for_code
from redis.backoff import NoBackoff
from redis.retry import Retry

__all__ = ["LOOPBACK", "EmbeddedStackError", "broker_ready", "ensure_topics", "redis_ready"]

T = TypeVar("T")

LOOPBACK = "127.0.0.1"
_TOPIC_ALREADY_EXISTS = 36


class EmbeddedStackError(RuntimeError):
    """A server could not be found, started or reached; the message quotes its log."""


def ensure_topics(
    brokers: str, names: Sequence[str], partitions: int = 4, timeout: float = 20.0
) -> None:
    """Create the topics that are missing; existing ones are left as they are."""
    _run_async(lambda: _ensure_topics(brokers, names, partitions, timeout))


def redis_ready(port: int, timeout: float) -> bool:
    """PING answers and no append-only file is still loading."""
    client = redis.Redis(
        host=LOOPBACK,
        port=port,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),  # the poll loop retries; redis-py's own 10 would stall it
    )
    try:
        if not client.ping():
            return False
        return int(client.info("persistence").get("loading", 0)) == 0
    except redis.RedisError:
        return False
    finally:
        client.close()


def _port_open(port: int, timeout: float) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=timeout):
            return True
    except OSError:
        return False


def broker_ready(port: int, timeout: float) -> bool:
    """The broker answers a metadata request (a bare TCP accept is not enough)."""
    if not _port_open(port, timeout):
        return False
    try:
        _run_async(lambda: _list_topics(f"{LOOPBACK}:{port}", timeout))
    except Exception:
        return False
    return True


async def _list_topics(brokers: str, timeout: float) -> list[str]:
    admin = _admin(brokers, timeout)
    try:
        await admin.start()
        topics: list[str] = await admin.list_topics()
        return topics
    finally:
        with contextlib.suppress(Exception):
            await admin.close()


def _admin(brokers: str, timeout: float) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(
        bootstrap_servers=brokers,
        client_id="nba-embedded",
        request_timeout_ms=max(int(timeout * 1000), 1000),
    )


async def _started_admin(brokers: str, deadline: float) -> AIOKafkaAdminClient:
    """An admin client connected to ``brokers``, retried until ``deadline`` (it may be booting)."""
    while True:
        admin = _admin(brokers, max(deadline - time.monotonic(), 1.0))
        try:
            await admin.start()
            return admin
        except KafkaError as exc:
            with contextlib.suppress(Exception):
                await admin.close()
            if time.monotonic() >= deadline:
                raise EmbeddedStackError(f"cannot reach Kafka at {brokers}: {exc!r}") from exc
            await asyncio.sleep(0.2)


async def _ensure_topics(
    brokers: str, names: Sequence[str], partitions: int, timeout: float
) -> None:
    """Create missing topics, tolerate "already exists", then wait until all are listed."""
    wanted = list(dict.fromkeys(names))
    if not wanted:
        return
    deadline = time.monotonic() + timeout
    admin = await _started_admin(brokers, deadline)
    try:
        missing = [name for name in wanted if name not in set(await admin.list_topics())]
        if missing:
            response = await admin.create_topics(
                [NewTopic(name, partitions, 1) for name in missing],
                timeout_ms=max(int(timeout * 1000), 1000),
            )
            problems = [
                f"{error[0]}: {for_code(error[1]).__name__}"
                + (f" ({error[2]})" if len(error) > 2 and error[2] else "")
                for error in response.topic_errors
                if error[1] not in (0, _TOPIC_ALREADY_EXISTS)
            ]
            if problems:
                raise EmbeddedStackError(
                    f"cannot create topics on {brokers}: " + "; ".join(problems)
                )
        while missing := [name for name in wanted if name not in set(await admin.list_topics())]:
            if time.monotonic() > deadline:
                raise EmbeddedStackError(f"topics not visible on {brokers}: {missing}")
            await asyncio.sleep(0.05)
    finally:
        with contextlib.suppress(Exception):
            await admin.close()


def _run_async(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion on a private thread and loop.

    Callers may be inside a running loop (async fixtures), and ``asyncio.run`` on the main
    thread would also reset that thread's current event loop; a thread avoids both.
    """
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(factory()))
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=target, name="nba-embedded-admin", daemon=True)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]
