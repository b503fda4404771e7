"""A minimal asyncio Redis connection for the decision's read: RESP over one socket,
parsed by hiredis.

Why not redis.asyncio on this path: its pipeline machinery (connection pool checkout,
command packing, response callbacks, a lock per connection) costs about 100 µs per
round trip over the wire time on this machine, more than the read itself
(../shared/PERFORMANCE.md: 129 µs against 27 µs for three reads). This class does the
least a read needs: it packs the commands, writes them, and hands the replies back in
order.

One connection serves every concurrent caller: RESP answers in request order, so each
call queues one future for its batch of replies and the channel resolves them as they
are parsed. A caller that gives up (a decision's latency budget ran out) leaves its
future to be resolved and dropped, which keeps the replies aligned. A lost connection
fails every waiting call with :class:`ConnectionError`; the next call connects again.

The decision's read may *spin*: read the socket in a loop for up to 100 µs instead of
returning to the event loop. On a quiet machine the feature read measured 72–79 µs
spinning against 118–132 µs waiting on the loop, side by side (median of 5,000,
benchmarks/test_bench_engine.py); most likely the difference is the process being
woken. Spinning is skipped while other calls wait, and rests after a spin that ran out
(see :class:`WireConnection`).

Single servers only (``redis://`` and ``unix://``, with user, password and database
from the URL); a cluster, or TLS, stays on redis-py (see :mod:`feature_store.connect`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import hiredis

__all__ = ["WireAddress", "WireConnection", "pack"]

Command = Sequence[bytes | bytearray | memoryview | str | int | float]
SPIN_S = 100e-6  # a read's spin budget: a few round trips (about 20-30 µs each here)
SPIN_REST = 64  # most calls that do not spin after spins ran out
_CHUNK = 1 << 16


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

    def __init__(self, future: asyncio.Future[list[Any]] | None, wanted: int) -> None:
        self.future = future  # None while its caller spins for the replies
        self.wanted = wanted
        self.replies: list[Any] = []


class _Channel:
    """One non-blocking socket read by the event loop (``add_reader``), whose replies are
    matched to callers in order.

    A watchdog closes a connection that leaves callers waiting with no data for
    ``stall_s`` (a frozen server), so none waits for ever and the next call connects
    again. Requests made in one turn of the event loop go out in one write at its end:
    a socket write costs tens of µs on this machine, and under load several decisions
    read at once. The socket is the class's own, not a transport's, so that a caller
    may also read it directly (:meth:`spin`).
    """

    def __init__(self, sock: socket.socket, stall_s: float) -> None:
        self.sock = sock
        self.loop = asyncio.get_running_loop()
        self.reader = hiredis.Reader()
        self.waiting: deque[_Batch] = deque()
        self.lost: BaseException | None = None
        self.stall_s = stall_s
        self.received = 0
        self._watchdog: asyncio.TimerHandle | None = None
        self._outgoing: list[bytes] = []
        self._unsent = b""  # what the socket did not take yet
        self._fd = sock.fileno()
        self.loop.add_reader(self._fd, self._readable)

    # ---- reading ------------------------------------------------------------------------
    def _readable(self) -> None:
        self._receive()

    def _receive(self) -> bool:
        """Read what the socket holds and resolve the calls it completes; False when it
        held nothing (or the connection is lost: see ``lost``)."""
        try:
            data = self.sock.recv(_CHUNK)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as exc:
            self.close(exc)
            return False
        if not data:
            self.close(ConnectionError("Redis closed the connection"))
            return False
        self._feed(data)
        return True

    def _feed(self, data: bytes) -> None:
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
                future = batch.future
                if future is not None and not future.done():  # a caller that gave up
                    future.set_result(batch.replies)  # is skipped

    def spin(self, payload: bytes, wanted: int, budget_s: float) -> list[Any] | _Batch:
        """Write now and read the socket in a loop until the replies are in or
        ``budget_s`` is spent: the replies, or the batch to wait for as usual.

        Only when no other call waits (the caller checks). On an idle machine, waking a
        process that sleeps on its socket cost more than the round trip itself (see the
        module's figures); spinning for at most the budget avoids that wake.

        Between reads it yields the CPU (``sched_yield``). Where Redis shares the API's
        CPU (``NBA_API_CPUS``), a spin that only read let the scheduler keep the API on
        until its slice ended, and ran out about 2,000 times in a 30 s run at 1,000
        decisions/s; yielding, 48-92 times. Server p50 0.371, 0.391, 0.390 ms against
        0.433, 0.413, 0.420 and p99 1.33, 1.67, 1.67 against 2.00, 1.79, 1.83 ms (three
        pairs alternated, adaptive on, ``benchmarks/results/20261125T050648Z`` to
        ``T051130Z``, the patch applied from a scratch ``sitecustomize.py``).
        """
        batch = _Batch(None, wanted)
        self.waiting.append(batch)
        self._write(payload)
        deadline = time.perf_counter() + budget_s
        while self.lost is None:
            if self._receive():
                if len(batch.replies) == wanted:
                    return batch.replies
            elif time.perf_counter() > deadline:
                break
            else:  # Redis may share this CPU: let it answer now, not at our slice's end
                os.sched_yield()
        if self.lost is not None:
            raise ConnectionError(f"Redis connection lost: {self.lost}")
        batch.future = self.loop.create_future()
        self._watch()
        return batch

    def collect(self, future: asyncio.Future[list[Any]]) -> None:
        """A caller's deadline: read what the socket holds, then fail the call with
        :class:`TimeoutError` if its replies are still missing.

        The caller is not cancelled: replies that came in time may still wait for a busy
        event loop (a large batch held it), and under uvloop a deadline that cancelled
        the caller (``asyncio.timeout``) won over them, so a decision fell back with its
        answer already here."""
        while not future.done() and self._receive():
            pass
        if not future.done():
            future.set_exception(TimeoutError("Redis did not answer within the budget"))

    # ---- writing ------------------------------------------------------------------------
    def send(self, payload: bytes, wanted: int) -> asyncio.Future[list[Any]]:
        future: asyncio.Future[list[Any]] = self.loop.create_future()
        self.waiting.append(_Batch(future, wanted))
        self._outgoing.append(payload)
        if len(self._outgoing) == 1:
            self.loop.call_soon(self._flush)
        self._watch()
        return future

    @property
    def idle(self) -> bool:
        return not self.waiting and not self._outgoing and self.lost is None

    def _flush(self) -> None:
        outgoing, self._outgoing = self._outgoing, []
        if outgoing and self.lost is None:
            self._write(b"".join(outgoing))

    def _write(self, data: bytes) -> None:
        if self._unsent:  # earlier data still queued: keep the order
            self._unsent += data
            return
        try:
            sent = self.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as exc:
            self.close(exc)
            return
        if sent < len(data):
            self._unsent = data[sent:]
            self.loop.add_writer(self._fd, self._writable)

    def _writable(self) -> None:
        try:
            sent = self.sock.send(self._unsent)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.close(exc)
            return
        self._unsent = self._unsent[sent:]
        if not self._unsent:
            self.loop.remove_writer(self._fd)

    # ---- failure ------------------------------------------------------------------------
    def _watch(self) -> None:
        if self._watchdog is None and self.lost is None:
            self._arm(self.received)

    def _arm(self, seen: int) -> None:
        self._watchdog = self.loop.call_later(self.stall_s, self._check, seen)

    def _check(self, seen: int) -> None:
        self._watchdog = None
        if not self.waiting or self.lost is not None:
            return
        if self.received == seen:  # callers waited a whole period and nothing came
            self.close(ConnectionError(f"Redis sent nothing for {self.stall_s} s"))
            return
        self._arm(self.received)

    def close(self, reason: BaseException | None = None) -> None:
        """Fail every waiting call; the next call connects again."""
        if self.lost is not None:
            return
        self.lost = reason or ConnectionError("closed")
        if self._watchdog is not None:
            self._watchdog.cancel()
        with contextlib.suppress(RuntimeError):  # a loop already closed forgot the socket
            self.loop.remove_reader(self._fd)
            self.loop.remove_writer(self._fd)
        self.sock.close()
        while self.waiting:
            future = self.waiting.popleft().future
            if future is not None and not future.done():
                future.set_exception(ConnectionError(f"Redis connection lost: {self.lost}"))


async def _within(
    channel: _Channel, future: asyncio.Future[list[Any]], deadline: float | None
) -> list[Any]:
    """``future``'s replies, or :class:`TimeoutError` at ``deadline`` (perf_counter
    time) unless they have arrived by then."""
    if deadline is None:
        return await future
    timer = channel.loop.call_later(
        max(deadline - time.perf_counter(), 0.0), channel.collect, future
    )
    try:
        return await future
    finally:
        timer.cancel()


class WireConnection:
    """One multiplexed connection, opened on first use and again after a loss.

    ``spin_s``: how long a call that asks to (:meth:`execute` with ``spin=True``, the
    decision's read) may read the socket in a loop for its replies before it waits on
    the event loop; 0 turns spinning off. It spins only while no other call waits.
    After a spin that ran out the next call does not spin, after two in a row the next
    two, and so on up to :data:`SPIN_REST`: a busy or slow server costs at most one
    budget now and then.
    """

    def __init__(
        self, address: WireAddress, timeout_s: float = 5.0, spin_s: float = SPIN_S
    ) -> None:
        self.address = address
        self.timeout_s = timeout_s
        self.spin_s = spin_s
        self._channel: _Channel | None = None
        self._connecting: asyncio.Lock | None = None
        self._rest = 0  # calls left before spinning again
        self._rest_next = 1  # doubles with each spin in a row that runs out
        self.spins = [0, 0]  # answered while spinning, ran out (for tests and figures)

    async def execute(
        self, commands: Sequence[Command], spin: bool = False, budget_s: float | None = None
    ) -> list[Any]:
        """The replies to ``commands``, sent in one write; a Redis error reply comes back
        as a :class:`hiredis.ReplyError` in its place, not raised. ``budget_s``: how long
        the call may take, connecting included, before :class:`TimeoutError`; replies
        that arrived by then count however late the event loop reads them
        (:meth:`_Channel.collect`). A call answered while it spins sets no timer."""
        deadline = None if budget_s is None else time.perf_counter() + budget_s
        channel = self._channel
        if channel is None or channel.lost is not None:
            async with asyncio.timeout(budget_s):
                channel = await self._connect()
        payload = pack(commands)
        if spin and self.spin_s > 0 and channel.idle:
            if self._rest:
                self._rest -= 1
            else:
                found = channel.spin(payload, len(commands), self.spin_s)
                if isinstance(found, list):
                    self.spins[0] += 1
                    self._rest_next = 1
                    return found
                self.spins[1] += 1
                self._rest = self._rest_next
                self._rest_next = min(2 * self._rest_next, SPIN_REST)
                assert found.future is not None
                return await _within(channel, found.future, deadline)
        return await _within(channel, channel.send(payload, len(commands)), deadline)

    async def _connect(self) -> _Channel:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:  # concurrent callers share one connection attempt
            if self._channel is not None and self._channel.lost is None:
                return self._channel
            sock = await asyncio.wait_for(self._open_socket(), self.timeout_s)
            channel = _Channel(sock, self.timeout_s)
            try:
                await self._handshake(channel)
            except BaseException:
                channel.close()
                raise
            self._channel = channel
            return channel

    async def _open_socket(self) -> socket.socket:
        a = self.address
        loop = asyncio.get_running_loop()
        if a.path:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            target: Any = a.path
        else:
            info = await loop.getaddrinfo(a.host, a.port, type=socket.SOCK_STREAM)
            family, kind, proto, _, target = info[0]
            sock = socket.socket(family, kind, proto)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, target)
        except BaseException:
            sock.close()
            raise
        return sock

    async def _handshake(self, channel: _Channel) -> None:
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
            channel.send(pack(commands), len(commands)), self.timeout_s
        )
        for reply in replies:
            if isinstance(reply, hiredis.ReplyError):
                raise ConnectionError(f"Redis refused the connection set-up: {reply}")

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
        self._channel = None
