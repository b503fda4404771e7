"""The decision's Redis connection (feature_store.wire) against a real redis-server of its
own, which the tests kill, freeze and restart."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import hiredis
import pytest
import redis
import uvloop
from hypothesis import given
from hypothesis import strategies as st

from engine.embedded import find_redis_server, free_port
from feature_store.wire import WireAddress, WireConnection, pack


class Server:
    """One redis-server on a free loopback port, restartable on the same port."""

    def __init__(self, folder: Path, *extra: str) -> None:
        self.folder = folder
        self.port = free_port()
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                *(find_redis_server(), "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--dir", str(self.folder), *self.extra),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                password = self.extra[1] if self.extra[:1] == ("--requirepass",) else None
                redis.Redis(port=self.port, password=password, socket_timeout=1).ping()
                return
            except redis.ConnectionError:
                time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
            self.process.wait(5)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    own = Server(tmp_path)
    own.start()
    yield own
    own.kill()


def test_urls_name_host_port_credentials_and_database() -> None:
    assert WireAddress.parse("redis://127.0.0.1:7001/2") == WireAddress("127.0.0.1", 7001, db=2)
    assert WireAddress.parse("redis://u%40x:p%3Aw@h:1") == WireAddress(
        "h", 1, username="u@x", password="p:w"
    )
    assert WireAddress.parse("unix:///tmp/r.sock?db=4") == WireAddress(path="/tmp/r.sock", db=4)
    assert WireAddress.parse("rediss://h:1") is None  # TLS stays on redis-py
    assert WireAddress.parse("") is None


parts = st.one_of(
    st.binary(max_size=40), st.text(max_size=20), st.integers(), st.floats(allow_nan=False)
)


@given(st.lists(st.lists(parts, min_size=1, max_size=6), min_size=1, max_size=8))
def test_packed_commands_parse_back_to_their_parts(commands: list[list[object]]) -> None:
    reader = hiredis.Reader()
    reader.feed(pack(commands))  # type: ignore[arg-type]
    for command in commands:
        expected = [
            p if isinstance(p, bytes) else (repr(p) if isinstance(p, float) else str(p)).encode()
            for p in command
        ]
        assert reader.gets() == expected
    assert reader.gets() is False


@pytest.mark.integration
async def test_concurrent_callers_each_get_their_own_replies(server: Server) -> None:
    redis.Redis(port=server.port).mset({f"k{i}": f"v{i}" for i in range(300)})
    wire = WireConnection(WireAddress(port=server.port))

    async def read(i: int) -> list[object]:
        return await wire.execute([("GET", f"k{i}"), ("GET", f"k{(i + 1) % 300}")])

    async def read_or_give_up(i: int) -> list[object] | None:
        if i % 7:
            return await read(i)
        # some callers give up once their request is sent: their replies must not go
        # to others
        task = asyncio.ensure_future(read(i))
        await asyncio.sleep(0)
        task.cancel()
        return None

    try:
        for _ in range(3):
            results = await asyncio.gather(*(read_or_give_up(i) for i in range(300)))
            for i, got in enumerate(results):
                if got is not None:
                    assert got == [f"v{i}".encode(), f"v{(i + 1) % 300}".encode()]
    finally:
        wire.close()


@pytest.mark.integration
async def test_a_caller_that_gave_up_does_not_disturb_the_next(server: Server) -> None:
    redis.Redis(port=server.port).set("k", "v")
    wire = WireConnection(WireAddress(port=server.port))
    try:
        with pytest.raises(TimeoutError):  # the server answers (nil) after 0.3 s
            await asyncio.wait_for(wire.execute([("BLPOP", "empty", "0.3")]), 0.05)
        got = await asyncio.wait_for(wire.execute([("GET", "k")]), 2)
        assert got == [b"v"]
        assert await wire.execute([("PING",)]) == [b"PONG"]
    finally:
        wire.close()


@pytest.mark.integration
async def test_a_budget_that_runs_out_raises_and_the_next_call_gets_its_own_reply(
    server: Server,
) -> None:
    wire = WireConnection(WireAddress(port=server.port))
    try:
        started = time.perf_counter()
        with pytest.raises(TimeoutError):  # the server answers (nil) after 0.3 s
            await wire.execute([("BLPOP", "empty", "0.3")], budget_s=0.05)
        assert time.perf_counter() - started < 0.25
        assert await wire.execute([("ECHO", "next")], budget_s=2.0) == [b"next"]
    finally:
        wire.close()


@pytest.mark.integration
@pytest.mark.parametrize("spin", [False, True])
def test_replies_that_came_within_the_budget_count_however_late_the_loop_reads_them(
    server: Server, spin: bool
) -> None:
    """The API runs on uvloop, where a deadline that cancelled the caller
    (``asyncio.timeout``) won over a reply that had come in time whenever the loop was
    held past the budget (a large batch): a fallback with the answer already here."""

    async def scenario() -> list[object]:
        wire = WireConnection(WireAddress(port=server.port), spin_s=1e-6 if spin else 0.0)
        try:
            assert await wire.execute([("PING",)]) == [b"PONG"]  # connected
            call = asyncio.ensure_future(
                wire.execute([("BLPOP", "empty", "0.005")], spin=spin, budget_s=0.02)
            )
            for _ in range(3):  # written (a spin that ran out, or the turn's flush)
                await asyncio.sleep(0)
            time.sleep(0.1)  # the loop is busy past the budget; Redis answers meanwhile
            return await call
        finally:
            wire.close()

    assert uvloop.run(scenario()) == [None]  # BLPOP timed out on the server after 5 ms


@pytest.mark.integration
async def test_an_error_reply_comes_back_in_its_place(server: Server) -> None:
    wire = WireConnection(WireAddress(port=server.port))
    try:
        redis.Redis(port=server.port).set("s", "x")
        replies = await wire.execute([("HGETALL", "s"), ("GET", "s")])
        assert isinstance(replies[0], hiredis.ReplyError) and "WRONGTYPE" in str(replies[0])
        assert replies[1] == b"x"
    finally:
        wire.close()


@pytest.mark.integration
async def test_password_and_database_come_from_the_url(tmp_path: Path) -> None:
    own = Server(tmp_path, "--requirepass", "s3cret")
    own.start()
    try:
        redis.Redis(port=own.port, password="s3cret", db=3).set("where", "db3")
        good = WireConnection(WireAddress.parse(f"redis://:s3cret@127.0.0.1:{own.port}/3"))  # type: ignore[arg-type]
        assert await good.execute([("GET", "where")]) == [b"db3"]
        good.close()
        bad = WireConnection(WireAddress(port=own.port, password="wrong"))
        with pytest.raises(ConnectionError, match="refused"):
            await bad.execute([("GET", "where")])
    finally:
        own.kill()


@pytest.mark.integration
async def test_a_killed_server_fails_waiting_calls_and_a_restarted_one_serves_again(
    server: Server,
) -> None:
    wire = WireConnection(WireAddress(port=server.port), timeout_s=2.0)
    try:
        assert await wire.execute([("PING",)]) == [b"PONG"]
        waiting = asyncio.ensure_future(wire.execute([("BLPOP", "never", "0")]))
        await asyncio.sleep(0.1)
        server.kill()
        with pytest.raises(ConnectionError):
            await asyncio.wait_for(waiting, 5)
        with pytest.raises(OSError):  # refused while it is down: no hang
            await asyncio.wait_for(wire.execute([("PING",)]), 5)
        server.start()
        assert await wire.execute([("PING",)]) == [b"PONG"]
    finally:
        wire.close()


@pytest.mark.integration
async def test_a_frozen_server_fails_waiting_calls_within_the_timeout(server: Server) -> None:
    wire = WireConnection(WireAddress(port=server.port), timeout_s=0.3)
    assert server.process is not None
    try:
        assert await wire.execute([("PING",)]) == [b"PONG"]
        os.kill(server.process.pid, signal.SIGSTOP)
        started = time.monotonic()
        with pytest.raises(ConnectionError):
            await asyncio.wait_for(wire.execute([("PING",)]), 5)
        assert time.monotonic() - started < 2.0
        os.kill(server.process.pid, signal.SIGCONT)
        assert await wire.execute([("PING",)]) == [b"PONG"]
    finally:
        os.kill(server.process.pid, signal.SIGCONT)
        wire.close()


@pytest.mark.integration
async def test_a_spinning_read_gets_its_replies_without_waiting_on_the_loop(
    server: Server,
) -> None:
    redis.Redis(port=server.port).mset({"a": "1", "b": "2"})
    wire = WireConnection(WireAddress(port=server.port), spin_s=0.05)
    try:
        for _ in range(20):
            assert await wire.execute([("GET", "a"), ("GET", "b")], spin=True) == [b"1", b"2"]
        assert wire.spins[0] >= 19  # the first call may find the connection being opened
    finally:
        wire.close()


@pytest.mark.integration
async def test_a_spin_that_runs_out_waits_for_its_replies_and_keeps_them_in_order(
    server: Server,
) -> None:
    redis.Redis(port=server.port).set("k", "v")
    wire = WireConnection(
        WireAddress(port=server.port), spin_s=0.05
    )  # the BLPOP outlasts it; a GET fits well inside
    try:
        await wire.execute([("PING",)])
        slow = asyncio.ensure_future(wire.execute([("BLPOP", "empty", "0.2")], spin=True))
        quick = asyncio.ensure_future(wire.execute([("GET", "k")], spin=True))
        assert await slow == [None]
        assert await quick == [b"v"]
        assert wire.spins[1] == 1  # the quick call did not spin while the slow one waited
        # after running out it rests one call, then spins again
        assert await wire.execute([("GET", "k")], spin=True) == [b"v"]
        assert await wire.execute([("GET", "k")], spin=True) == [b"v"]
        assert wire.spins == [1, 1]
    finally:
        wire.close()


@pytest.mark.integration
async def test_a_server_lost_while_spinning_fails_the_call_and_the_next_reconnects(
    server: Server,
) -> None:
    wire = WireConnection(WireAddress(port=server.port), spin_s=0.5)
    try:
        assert await wire.execute([("PING",)], spin=True) == [b"PONG"]
        redis.Redis(port=server.port).client_kill_filter(skipme=True)
        with pytest.raises(ConnectionError):
            await wire.execute([("PING",)], spin=True)
        assert await wire.execute([("PING",)], spin=True) == [b"PONG"]
    finally:
        wire.close()


@pytest.mark.integration
async def test_a_large_request_the_socket_takes_in_parts_arrives_whole(server: Server) -> None:
    wire = WireConnection(WireAddress(port=server.port))
    value = os.urandom(4 << 20)  # beyond the socket's send buffer
    try:
        replies = await wire.execute([("SET", "big", value), ("STRLEN", "big"), ("GET", "big")])
        assert replies[:2] == [b"OK", len(value)] and replies[2] == value
    finally:
        wire.close()
