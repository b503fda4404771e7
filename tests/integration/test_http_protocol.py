"""The API's HTTP/1.1 protocol (engine.http_protocol) as a client on a socket sees it: a
real uvicorn server on a free loopback port, raw bytes in and out. Every test runs against
uvicorn's own httptools protocol too: the two behave alike."""

from __future__ import annotations

import asyncio
import itertools
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.embedded import free_port
from engine.http_protocol import HIGH_WATER, LeanHttpProtocol

KEEP_ALIVE_S = 0.5
seen_disconnects: list[str] = []


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Test routes: /echo, /slow (answers after 50 ms), /stream (no length: chunked),
    /fail (raises), /silent (returns without answering), /hold (waits for the client to
    go away and notes it)."""
    assert scope["type"] == "http"
    path = scope["path"]
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if path == "/fail":
        raise RuntimeError("the app failed")
    if path == "/silent":
        return
    if path == "/hold":
        message = await receive()
        seen_disconnects.append(message["type"])
        return
    if path == "/slow":
        await asyncio.sleep(0.05)
    if path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"hello ", "more_body": True})
        await send({"type": "http.response.body", "body": b"world"})
        return
    answer = orjson.dumps(
        {
            "method": scope["method"],
            "path": path,
            "query": scope["query_string"].decode(),
            "length": len(body),
            "body": body[:64].decode("latin-1"),
            "version": scope["http_version"],
        }
    )
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(answer))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": answer})


@pytest.fixture(scope="module", params=["lean", "uvicorn"])
def port(request: pytest.FixtureRequest) -> Iterator[int]:
    chosen = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=chosen,
        http=LeanHttpProtocol if request.param == "lean" else "httptools",
        lifespan="off",
        log_level="critical",
        timeout_keep_alive=KEEP_ALIVE_S,  # type: ignore[arg-type]
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    yield chosen
    server.should_exit = True
    thread.join(10)


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def request_bytes(
    method: str, path: str, body: bytes = b"", *extra: str, version: str = "1.1"
) -> bytes:
    lines = [f"{method} {path} HTTP/{version}", "host: test", f"content-length: {len(body)}"]
    return ("\r\n".join([*lines, *extra]) + "\r\n\r\n").encode() + body


class Reader:
    """Reads HTTP/1.1 responses off a socket, framed as a client frames them."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def _more(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise EOFError
        self.buffer += data

    def _line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            self._more()
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def _take(self, n: int) -> bytes:
        while len(self.buffer) < n:
            self._more()
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def response(self, head_request: bool = False) -> tuple[int, dict[str, str], bytes]:
        status = int(self._line().split()[1])
        headers: dict[str, str] = {}
        while line := self._line():
            name, value = line.decode().split(":", 1)
            headers[name.lower()] = value.strip()
        if head_request or status in (100, 204, 304):
            return status, headers, b""
        if "content-length" in headers:
            return status, headers, self._take(int(headers["content-length"]))
        if headers.get("transfer-encoding") == "chunked":
            body = b""
            while size := int(self._line(), 16):
                body += self._take(size)
                assert self._take(2) == b"\r\n"
            assert self._take(2) == b"\r\n"
            return status, headers, body
        while True:  # framed by the connection's end
            try:
                self._more()
            except EOFError:
                body, self.buffer = self.buffer, b""
                return status, headers, body

    def closed(self) -> bool:
        """The server closed the connection (and sent nothing more)."""
        try:
            self._more()
        except (EOFError, ConnectionResetError):
            return self.buffer == b""
        return False


def test_keep_alive_serves_requests_in_turn(port: int) -> None:
    with connect(port) as sock:
        reader = Reader(sock)
        for n in range(3):
            sock.sendall(request_bytes("POST", f"/echo?n={n}", b"x" * n))
            status, headers, body = reader.response()
            assert status == 200
            assert orjson.loads(body) == {
                "method": "POST",
                "path": "/echo",
                "query": f"n={n}",
                "length": n,
                "body": "x" * n,
                "version": "1.1",
            }
            assert "connection" not in headers
            assert headers["server"] == "uvicorn"  # the server's headers on every answer
            assert headers["date"].endswith(" GMT")


def test_pipelined_requests_are_answered_in_their_order(port: int) -> None:
    with connect(port) as sock:
        reader = Reader(sock)
        sock.sendall(
            request_bytes("POST", "/slow", b"first") + request_bytes("POST", "/echo", b"second")
        )
        first = orjson.loads(reader.response()[2])
        second = orjson.loads(reader.response()[2])
        assert (first["path"], first["body"]) == ("/slow", "first")
        assert (second["path"], second["body"]) == ("/echo", "second")


def test_a_chunked_request_body_reaches_the_app_whole(port: int) -> None:
    with connect(port) as sock:
        head = b"POST /echo HTTP/1.1\r\nhost: test\r\ntransfer-encoding: chunked\r\n\r\n"
        sock.sendall(head + b"5\r\nhello\r\n")
        time.sleep(0.02)
        sock.sendall(b"6\r\n world\r\n0\r\n\r\n")
        status, _, body = Reader(sock).response()
        assert status == 200
        assert orjson.loads(body)["body"] == "hello world"


def test_expect_continue_is_answered_before_the_body_is_sent(port: int) -> None:
    with connect(port) as sock:
        reader = Reader(sock)
        sock.sendall(
            request_bytes("POST", "/echo", b"", "expect: 100-continue").replace(
                b"content-length: 0", b"content-length: 4"
            )
        )
        assert reader.response()[0] == 100
        sock.sendall(b"body")
        status, _, body = reader.response()
        assert status == 200
        assert orjson.loads(body)["body"] == "body"


def answered_then_closed(port: int, raw: bytes) -> tuple[int, bytes]:
    """The status and body of the answer to ``raw``, which must say ``connection: close``
    and be followed by the server closing the connection."""
    with connect(port) as sock:
        reader = Reader(sock)
        sock.sendall(raw)
        status, headers, body = reader.response()
        assert headers["connection"] == "close"
        assert reader.closed()
    return status, body


def test_http_1_0_gets_its_answer_then_the_connection_closes(port: int) -> None:
    status, body = answered_then_closed(port, request_bytes("GET", "/echo", version="1.0"))
    assert status == 200
    assert orjson.loads(body)["version"] == "1.0"


def test_connection_close_is_honoured(port: int) -> None:
    status, _ = answered_then_closed(port, request_bytes("GET", "/echo", b"", "connection: close"))
    assert status == 200


def test_a_response_without_length_is_sent_chunked(port: int) -> None:
    with connect(port) as sock:
        reader = Reader(sock)
        sock.sendall(request_bytes("GET", "/stream"))
        status, headers, body = reader.response()
        assert headers["transfer-encoding"] == "chunked"
        assert (status, body) == (200, b"hello world")
        sock.sendall(request_bytes("GET", "/echo"))  # the connection is still in step
        assert reader.response()[0] == 200


def test_head_gets_the_headers_without_the_body(port: int) -> None:
    with connect(port) as sock:
        reader = Reader(sock)
        sock.sendall(request_bytes("HEAD", "/echo"))
        status, headers, _ = reader.response(head_request=True)
        assert status == 200
        assert int(headers["content-length"]) > 0
        sock.sendall(request_bytes("GET", "/echo?after=head"))
        assert orjson.loads(reader.response()[2])["query"] == "after=head"


def test_a_malformed_request_gets_400_and_the_connection_closes(port: int) -> None:
    status, body = answered_then_closed(port, b"NOT HTTP AT ALL\r\n\r\n")
    assert status == 400
    assert b"Invalid HTTP request" in body


@pytest.mark.parametrize("path", ["/fail", "/silent"])
def test_an_app_that_does_not_answer_gives_500(port: int, path: str) -> None:
    assert answered_then_closed(port, request_bytes("GET", path))[0] == 500


def test_an_idle_connection_is_closed_after_the_keep_alive_time(port: int) -> None:
    with connect(port) as sock:
        reader = Reader(sock)
        for _ in range(3):  # activity keeps it open past one keep-alive period
            time.sleep(KEEP_ALIVE_S * 0.6)
            sock.sendall(request_bytes("GET", "/echo"))
            assert reader.response()[0] == 200
        started = time.monotonic()
        assert reader.closed()
        assert KEEP_ALIVE_S * 0.5 < time.monotonic() - started < KEEP_ALIVE_S * 4


def test_the_app_hears_that_the_client_went_away(port: int) -> None:
    seen_disconnects.clear()
    with connect(port) as sock:
        sock.sendall(request_bytes("POST", "/hold", b"x"))
        time.sleep(0.05)
    deadline = time.monotonic() + 5
    while not seen_disconnects and time.monotonic() < deadline:
        time.sleep(0.01)
    assert seen_disconnects == ["http.disconnect"]


def test_a_body_larger_than_the_buffer_arrives_whole(port: int) -> None:
    size = 6 * HIGH_WATER + 17
    with connect(port) as sock:
        sock.sendall(request_bytes("POST", "/echo", bytes(size)))
        status, _, body = Reader(sock).response()
        assert status == 200
        assert orjson.loads(body)["length"] == size


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    bodies=st.lists(st.binary(max_size=300), min_size=1, max_size=5),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=6),
)
def test_pipelined_bytes_split_anywhere_give_the_same_answers(
    port: int, bodies: list[bytes], cuts: list[int]
) -> None:
    stream = b"".join(request_bytes("POST", f"/echo?i={i}", body) for i, body in enumerate(bodies))
    points = sorted({min(cut, len(stream)) for cut in cuts} | {0, len(stream)})
    with connect(port) as sock:
        for start, end in itertools.pairwise(points):
            sock.sendall(stream[start:end])
        reader = Reader(sock)
        for i, body in enumerate(bodies):
            status, _, answer = reader.response()
            echoed = orjson.loads(answer)
            assert status == 200
            assert (echoed["query"], echoed["length"]) == (f"i={i}", len(body))
            assert echoed["body"] == body[:64].decode("latin-1")


def test_an_upgrade_request_is_answered_plainly_then_closed(
    port: int, request: pytest.FixtureRequest
) -> None:
    if request.node.callspec.params["port"] != "lean":
        pytest.skip("uvicorn's protocol hands the connection to its WebSocket protocol")
    upgrade = request_bytes("GET", "/echo", b"", "connection: upgrade", "upgrade: websocket")
    status, body = answered_then_closed(port, upgrade)
    assert status == 200
    assert orjson.loads(body)["path"] == "/echo"


@pytest.mark.parametrize(
    ("target", "status", "path", "query"),
    [
        (b"/\xc3\xa9", 400, None, None),  # raw non-ASCII bytes in the path
        (b"/a%20b?q=%C3%A9", 200, "/a b", "q=%C3%A9"),  # the path decoded, the query not
        (b"http://x/abs", 200, "/abs", ""),  # absolute form
    ],
)
def test_request_targets(
    port: int, target: bytes, status: int, path: str | None, query: str | None
) -> None:
    with connect(port) as sock:
        sock.sendall(b"GET %s HTTP/1.1\r\nhost: x\r\n\r\n" % target)
        got, _, body = Reader(sock).response()
        assert got == status
        if status == 200:
            echoed = orjson.loads(body)
            assert (echoed["path"], echoed["query"]) == (path, query)


@pytest.mark.parametrize("protocol", ["lean", "uvicorn"])
def test_a_graceful_stop_answers_what_is_in_hand_then_closes(protocol: str) -> None:
    chosen = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=chosen,
        http=LeanHttpProtocol if protocol == "lean" else "httptools",
        lifespan="off",
        log_level="critical",
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    with connect(chosen) as idle, connect(chosen) as busy:
        idle.sendall(request_bytes("GET", "/echo"))
        idle_reader = Reader(idle)
        assert idle_reader.response()[0] == 200
        busy.sendall(request_bytes("POST", "/slow", b"in hand"))
        time.sleep(0.01)  # the request is with the app
        server.should_exit = True
        stopping = time.monotonic()
        busy_reader = Reader(busy)
        status, _, body = busy_reader.response()
        assert (status, orjson.loads(body)["body"]) == (200, "in hand")
        assert busy_reader.closed()
        assert idle_reader.closed()
        assert time.monotonic() - stopping < 2  # not the keep-alive's nor the stop's 5 s
    thread.join(10)
    assert not thread.is_alive()
