"""A minimal asyncio Redis connection for the decision's read: RESP over one socket,
parsed by hiredis.

Why not redis.asyncio on this path: its pipeline machinery (connection pool checkout,
command packing, response callbacks, a lock per connection) costs about 100 µs per
round trip over the wire time on this machine, more than the read itself
(../shared/PERFORMANCE.md: 129 µs against 27 µs for three reads). This class does the
least a read needs: it packs the commands, writes them, and hands the replies back in
order.

One connection serves every concurrent caller: RESP answers in request order, so each
call queues one future for its batch of replies and the protocol resolves them as they
are parsed. A caller that gives up (a decision's latency budget ran out) leaves its
future to be resolved and dropped, which keeps the replies aligned. A lost connection
fails every waiting call with :class:`ConnectionError`; the next call connects again.

Single servers only (``redis://`` and ``unix://``, with user, password and database
from the URL); a cluster, or TLS, stays on redis-py (see :mod:`feature_store.connect`).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import hiredis

__all__ = ["WireAddress", "WireConnection", "pack"]

Command = Sequence[bytes | bytearray | memoryview | str | int | float]


@dataclass(frozen=True, slots=True)
class WireAddress:
    host: str = "127.0.0.1"
    port: int = 6379
    path: str | None = None  # a unix socket
    username: str | None = None
    password: str | None = None
    db: int = 0

    @classmethod
    def parse(cls, url: str) -> WireAddress | None:
        """The address of a plain ``redis://`` or ``unix://`` URL; None for anything else."""
        parts = urlsplit(url)
        user = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password else None
        if parts.scheme == "unix":
            query = dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p)
            return cls(
                path=parts.path, username=user, password=password, db=int(query.get("db", 0))
            )
        if parts.scheme != "redis":
            return None
        db = parts.path.lstrip("/")
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 6379,
            username=user,
            password=password,
            db=int(db) if db else 0,
        )


def pack(commands: Sequence[Command]) -> bytes:
    """RESP arrays of bulk strings, the one request form every Redis command accepts."""
    out: list[bytes] = []
    for command in commands:
        out.append(b"*%d\r\n" % len(command))
        for part in command:
            if isinstance(part, bytes):
                data = part
            elif isinstance(part, bytearray | memoryview):
                data = bytes(part)
            elif isinstance(part, str):
                data = part.encode()
            elif isinstance(part, float):
                data = repr(part).encode()
            else:
                data = str(part).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class _Batch:
    """The replies one call waits for."""

    __slots__ = ("future", "replies", "wanted")

    def __init__(self, future: asyncio.Future[list[Any]], wanted: int) -> None:
        self.future = future
        self.wanted = wanted
        self.replies: list[Any] = []


class _RespProtocol(asyncio.Protocol):
    """Replies matched to callers in order; a watchdog closes a connection that leaves
    callers waiting with no data for ``stall_s`` (a frozen server), so none waits for
    ever and the next call connects again.

    Requests made in one turn of the event loop go out in one write at its end: a
    socket write costs tens of µs on this machine, and under load several decisions
    read at once.
    """

    def __init__(self, stall_s: float) -> None:
        self.reader = hiredis.Reader()
        self.waiting: deque[_Batch] = deque()
        self.transport: asyncio.Transport | None = None
        self.lost: BaseException | None = None
        self.stall_s = stall_s
        self.received = 0
        self._watchdog: asyncio.TimerHandle | None = None
        self._outgoing: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        self.received += 1
        self.reader.feed(data)
        waiting = self.waiting
        while waiting:
            reply = self.reader.gets()
            if reply is False:
                return
            batch = waiting[0]
            batch.replies.append(reply)
            if len(batch.replies) == batch.wanted:
                waiting.popleft()
                if not batch.future.done():  # a caller that timed out is skipped
                    batch.future.set_result(batch.replies)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc or ConnectionError("Redis closed the connection")
        if self._watchdog is not None:
            self._watchdog.cancel()
        while self.waiting:
            future = self.waiting.popleft().future
            if not future.done():
                future.set_exception(ConnectionError(f"Redis connection lost: {self.lost}"))

    def send(self, payload: bytes, wanted: int) -> asyncio.Future[list[Any]]:
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        assert self.transport is not None
        self.waiting.append(_Batch(future, wanted))
        self._outgoing.append(payload)
        if len(self._outgoing) == 1:
            asyncio.get_running_loop().call_soon(self._flush)
        if self._watchdog is None:
            self._arm(self.received)
        return future

    def _flush(self) -> None:
        outgoing, self._outgoing = self._outgoing, []
        if self.transport is not None and self.lost is None:
            self.transport.write(b"".join(outgoing))

    def _arm(self, seen: int) -> None:
        loop = asyncio.get_running_loop()
        self._watchdog = loop.call_later(self.stall_s, self._check, seen)

    def _check(self, seen: int) -> None:
        self._watchdog = None
        if not self.waiting or self.transport is None:
            return
        if self.received == seen:  # callers waited a whole period and nothing came
            self.transport.abort()
            return
        self._arm(self.received)


class WireConnection:
    """One multiplexed connection, opened on first use and again after a loss."""

    def __init__(self, address: WireAddress, timeout_s: float = 5.0) -> None:
        self.address = address
        self.timeout_s = timeout_s
        self._protocol: _RespProtocol | None = None
        self._connecting: asyncio.Lock | None = None

    async def execute(self, commands: Sequence[Command]) -> list[Any]:
        """The replies to ``commands``, sent in one write; a Redis error reply comes back
        as a :class:`hiredis.ReplyError` in its place, not raised."""
        protocol = self._protocol
        if protocol is None or protocol.lost is not None:
            protocol = await self._connect()
        return await protocol.send(pack(commands), len(commands))

    async def _connect(self) -> _RespProtocol:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:  # concurrent callers share one connection attempt
            if self._protocol is not None and self._protocol.lost is None:
                return self._protocol
            loop = asyncio.get_running_loop()
            a = self.address

            def make() -> _RespProtocol:
                return _RespProtocol(self.timeout_s)

            opening = (
                loop.create_unix_connection(make, a.path)
                if a.path
                else loop.create_connection(make, a.host, a.port)
            )
            transport, protocol = await asyncio.wait_for(opening, self.timeout_s)
            try:
                await self._handshake(protocol)
            except BaseException:
                transport.close()
                raise
            self._protocol = protocol
            return protocol

    async def _handshake(self, protocol: _RespProtocol) -> None:
        a = self.address
        commands: list[Command] = []
        if a.password is not None:
            user = (a.username,) if a.username else ()
            commands.append(("AUTH", *user, a.password))
        if a.db:
            commands.append(("SELECT", a.db))
        if not commands:
            return
        replies = await asyncio.wait_for(
            protocol.send(pack(commands), len(commands)), self.timeout_s
        )
        for reply in replies:
            if isinstance(reply, hiredis.ReplyError):
                raise ConnectionError(f"Redis refused the connection set-up: {reply}")

    def close(self) -> None:
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.close()
        self._protocol = None
