"""HTTP/1.1 for the API's processes: a lean protocol that uvicorn hosts (its ``http`` option).

Why not uvicorn's own httptools protocol: it writes a response's head as soon as the app
starts the response and its body in a second ``send`` system call, and per request it builds
a response cycle object, an ``asyncio.Event`` and a keep-alive timer that is cancelled and
set again. A page view pays all of it, and at the issue's loads the HTTP layer was about a
third of the API's CPU. Here the head waits for the body and both leave in one write. With
the same parser (httptools), the same event loop (uvloop) and a bare ASGI app, a request
cost 38-44 µs of CPU against 57-68 µs for uvicorn's protocol, client included, side by side
in one process (``benchmarks/test_bench_http.py``); in a py-spy profile of that benchmark
uvicorn's two writes held 18.5% of the samples, this protocol's one write 5.6%. uvicorn
still runs the server around it: the sockets, the worker processes, lifespan, the ``date``
header, signals and the graceful stop.

What it does, per connection: requests parsed as they arrive and answered one after
another in their order (pipelining included); request bodies streamed to the app, with
reading paused while more than :data:`HIGH_WATER` bytes wait for it; ``Expect:
100-continue``; responses framed by their ``Content-Length``, else chunked (or, for
HTTP/1.0, by closing); ``HEAD`` answered without a body; keep-alive closed after
``timeout_keep_alive`` idle seconds by one timer per connection, not one per request;
``limit_concurrency`` answered 503. A malformed request gets 400 and the connection is
closed; an app that fails before answering gives 500.

What it leaves out: WebSocket upgrades (an upgrade request is answered as a plain request
and the connection closed) and the access log. ``NBA_HTTP_PROTOCOL=uvicorn`` serves with
uvicorn's own protocol instead.
"""

from __future__ import annotations

import asyncio
import http
import logging
import urllib.parse
from collections import deque
from typing import Any, cast

import httptools
from uvicorn.config import Config
from uvicorn.protocols.http.flow_control import service_unavailable
from uvicorn.protocols.utils import get_local_addr, get_remote_addr, is_ssl
from uvicorn.server import ServerState

__all__ = ["HIGH_WATER", "LeanHttpProtocol"]

HIGH_WATER = 64 * 1024  # request body bytes buffered before reading pauses
log = logging.getLogger("uvicorn.error")  # where uvicorn's protocols report app failures
Message = dict[str, Any]

_BODYLESS_STATUS = frozenset({204, 304})
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_LAST_CHUNK = b"0\r\n\r\n"
_DISCONNECT: Message = {"type": "http.disconnect"}
_ASGI = {"version": "3.0", "spec_version": "2.3"}  # shared by every scope, as the constant it is


_STATUS_LINES: dict[int, bytes] = {}


def _status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        try:
            phrase = http.HTTPStatus(status).phrase.encode()
        except ValueError:
            phrase = b""
        line = _STATUS_LINES[status] = b"HTTP/1.1 %d %s\r\n" % (status, phrase)
    return line


class _Exchange:
    """One request and its response: the ASGI ``receive`` and ``send`` of one app call."""

    __slots__ = (
        "body_sent",
        "buffered",
        "chunked",
        "chunks",
        "complete",
        "disconnected",
        "expect_continue",
        "finished",
        "head",
        "head_request",
        "keep_alive",
        "protocol",
        "scope",
        "started",
        "waiter",
    )

    def __init__(
        self,
        protocol: LeanHttpProtocol,
        scope: dict[str, Any],
        keep_alive: bool,
        expect_continue: bool,
    ) -> None:
        self.protocol = protocol
        self.scope = scope
        self.keep_alive = keep_alive
        self.expect_continue = expect_continue
        self.head_request = scope["method"] == "HEAD"
        self.chunks: list[bytes] = []
        self.buffered = 0
        self.complete = False  # the request's body is all in
        self.body_sent = False  # ... and handed to the app
        self.disconnected = False
        self.waiter: asyncio.Future[None] | None = None
        self.started = False
        self.finished = False  # the response is all out
        self.chunked = False
        self.head = b""  # the response's status line and headers, written with its body

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def _wait(self) -> None:
        waiter = self.waiter = self.protocol.loop.create_future()
        await waiter

    async def receive(self) -> Message:
        while not self.chunks and not self.complete and not self.disconnected:
            if self.expect_continue:
                self.expect_continue = False
                self.protocol.write(_CONTINUE)
            await self._wait()
        if self.chunks or not self.body_sent:
            chunks = self.chunks
            body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            self.chunks = []
            self.buffered = 0
            self.body_sent = self.complete
            self.protocol.read_on()  # the buffered body is the app's now
            return {"type": "http.request", "body": body, "more_body": not self.complete}
        while not self.disconnected and not self.finished:  # the body was read in full
            await self._wait()
        return _DISCONNECT

    async def send(self, message: Message) -> None:
        protocol = self.protocol
        if protocol.writable is not None:
            await protocol.writable
        kind = message["type"]
        if not self.started:
            if kind != "http.response.start":
                raise RuntimeError(f"expected 'http.response.start', got {kind!r}")
            self.started = True
            self._start(message["status"], message.get("headers", ()))
            return
        if kind != "http.response.body":
            raise RuntimeError(f"expected 'http.response.body', got {kind!r}")
        if self.finished:
            raise RuntimeError("the response has already been sent")
        body: bytes = message.get("body", b"")
        more = message.get("more_body", False)
        out = [self.head] if self.head else []
        self.head = b""
        if body and not self.head_request:
            out.append(b"%x\r\n%s\r\n" % (len(body), body) if self.chunked else body)
        if not more:
            self.finished = True
            if self.chunked and not self.head_request:
                out.append(_LAST_CHUNK)
        if out and not self.disconnected:
            protocol.write(out[0] if len(out) == 1 else b"".join(out))
        if self.finished:
            self.wake()
            protocol.answered(self)

    def _start(self, status: int, headers: Any) -> None:
        out = [_status_line(status), self.protocol.default_headers()]
        length = False
        for name, value in headers:
            name = name.lower()
            if name == b"content-length":
                length = True
            elif name == b"connection" and value.lower() == b"close":
                self.keep_alive = False
            elif name == b"transfer-encoding":  # the app frames its body itself
                length = True
            out.append(b"%s: %s\r\n" % (name, value))
        if not length and status not in _BODYLESS_STATUS and status >= 200:
            if self.scope["http_version"] == "1.0":
                self.keep_alive = False  # the end of the body is the connection's
            else:
                self.chunked = True
                out.append(b"transfer-encoding: chunked\r\n")
        if not self.keep_alive:
            out.append(b"connection: close\r\n")
        out.append(b"\r\n")
        self.head = b"".join(out)


class LeanHttpProtocol(asyncio.Protocol):
    """One connection. uvicorn makes one per accepted socket, with these arguments."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if not config.loaded:
            config.load()
        self.app = config.loaded_app
        self.loop = _loop or asyncio.get_event_loop()
        self.root_path = config.root_path
        self.root_path_bytes = config.root_path.encode("ascii")
        self.keep_alive_s = float(config.timeout_keep_alive)
        self.limit_concurrency = config.limit_concurrency
        self.server_state = server_state
        self.app_state = app_state
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.exchanges: deque[_Exchange] = deque()  # parsed, in order; the first is served
        self.incoming: _Exchange | None = None  # the request being parsed
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.expecting = False  # the request being parsed asked for 100-continue
        self.writable: asyncio.Future[None] | None = None  # while the transport is full
        self.reading_paused = False
        self.closing = False
        self.active_at = 0.0
        self.idle_timer: asyncio.TimerHandle | None = None
        self.client: tuple[str, int] | None = None
        self.server: tuple[str, int | None] | None = None
        self.scheme = "http"
        self._defaults_of: list[tuple[bytes, bytes]] | None = None
        self._defaults = b""

    # ---- the connection -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.server_state.connections.add(self)  # type: ignore[arg-type]
        self.client = get_remote_addr(self.transport)
        self.server = get_local_addr(self.transport)
        self.scheme = "https" if is_ssl(self.transport) else "http"
        self.active_at = self.loop.time()
        self.idle_timer = self.loop.call_later(self.keep_alive_s, self._check_idle)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server_state.connections.discard(self)
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None
        for exchange in self.exchanges:
            exchange.disconnected = True
            exchange.wake()
        if self.incoming is not None:
            self.incoming.disconnected = True
        writable, self.writable = self.writable, None
        if writable is not None and not writable.done():
            writable.set_result(None)

    def shutdown(self) -> None:
        """uvicorn's graceful stop: close now if idle, else after the answer in hand."""
        self.closing = True
        if not self.exchanges and self.transport is not None:
            self.transport.close()

    def pause_writing(self) -> None:
        if self.writable is None:
            self.writable = self.loop.create_future()

    def resume_writing(self) -> None:
        writable, self.writable = self.writable, None
        if writable is not None and not writable.done():
            writable.set_result(None)

    def default_headers(self) -> bytes:
        """uvicorn's headers for every response (``date``, ``server``), encoded once per
        list: its server replaces the list when the date changes, once a second."""
        current = self.server_state.default_headers
        if current is not self._defaults_of:
            self._defaults_of = current
            self._defaults = b"".join(b"%s: %s\r\n" % (n, v) for n, v in current)
        return self._defaults

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        if not self.transport.is_closing():
            self.transport.write(data)

    def _check_idle(self) -> None:
        """Keep-alive: one timer per connection, checked against the last activity."""
        self.idle_timer = None
        assert self.transport is not None
        if self.transport.is_closing():
            return
        idle = self.loop.time() - self.active_at
        if not self.exchanges and idle >= self.keep_alive_s:
            self.transport.close()
            return
        wait = self.keep_alive_s - idle if not self.exchanges else self.keep_alive_s
        self.idle_timer = self.loop.call_later(max(wait, 0.01), self._check_idle)

    # ---- reading --------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        self.active_at = self.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # No WebSocket here: the request is answered as it stands, then the
            # connection closes (what follows the headers is not HTTP to us).
            incoming = self.incoming
            if incoming is not None:
                incoming.keep_alive = False
                self._complete(incoming)
        except httptools.HttpParserError:
            self._bad_request()

    def _bad_request(self) -> None:
        assert self.transport is not None
        if not self.exchanges:
            message = b"Invalid HTTP request received."
            self.write(
                b"%scontent-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n"
                b"connection: close\r\n\r\n%s" % (_status_line(400), len(message), message)
            )
        self.transport.close()

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.expecting = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        value = value.rstrip(b" \t")
        if name == b"expect" and value.lower() == b"100-continue":
            self.expecting = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self.parser
        url = httptools.parse_url(self.url)
        raw_path: bytes = url.path
        path = raw_path.decode("ascii")
        if "%" in path:
            path = urllib.parse.unquote(path)
        scope = {
            "type": "http",
            "asgi": _ASGI,
            "http_version": parser.get_http_version(),
            "server": self.server,
            "client": self.client,
            "scheme": self.scheme,
            "method": parser.get_method().decode("ascii"),
            "root_path": self.root_path,
            "path": self.root_path + path,
            "raw_path": self.root_path_bytes + raw_path,
            "query_string": url.query or b"",
            "headers": self.headers,
            "state": self.app_state.copy(),
        }
        keep_alive = parser.should_keep_alive() and not parser.should_upgrade()
        exchange = self.incoming = _Exchange(
            self, scope, keep_alive and not self.closing, self.expecting
        )
        self.exchanges.append(exchange)
        if len(self.exchanges) == 1:
            self._serve(exchange)
        elif not self.reading_paused:  # pipelined: parse no further until it is served
            self._pause_reading()

    def on_body(self, body: bytes) -> None:
        exchange = self.incoming
        if exchange is None or exchange.finished:  # answered already: the rest is dropped
            return
        exchange.chunks.append(body)
        exchange.buffered += len(body)
        if exchange.buffered > HIGH_WATER and not self.reading_paused:
            self._pause_reading()
        exchange.wake()

    def on_message_complete(self) -> None:
        exchange = self.incoming
        if exchange is not None:
            self._complete(exchange)

    def _complete(self, exchange: _Exchange) -> None:
        self.incoming = None
        exchange.complete = True
        exchange.wake()

    def read_on(self) -> None:
        """Resume reading if it was paused and nothing holds it any more: no pipelined
        request waits, and the request being parsed buffers no more than HIGH_WATER."""
        incoming = self.incoming
        if (
            self.reading_paused
            and len(self.exchanges) <= 1
            and (incoming is None or incoming.buffered <= HIGH_WATER)
        ):
            self.reading_paused = False
            assert self.transport is not None
            self.transport.resume_reading()

    def _pause_reading(self) -> None:
        self.reading_paused = True
        assert self.transport is not None
        self.transport.pause_reading()

    # ---- serving --------------------------------------------------------------------------
    def _serve(self, exchange: _Exchange) -> None:
        app = self.app
        limit = self.limit_concurrency
        tasks = self.server_state.tasks
        if limit is not None and (
            len(self.server_state.connections) >= limit or len(tasks) >= limit
        ):
            log.warning("Exceeded concurrency limit.")
            app = service_unavailable
        task = self.loop.create_task(self._run(app, exchange))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def _run(self, app: Any, exchange: _Exchange) -> None:
        try:
            await app(exchange.scope, exchange.receive, exchange.send)
        except BaseException as exc:
            log.error("Exception in ASGI application\n", exc_info=exc)
            self._fail(exchange)
            if not isinstance(exc, Exception):
                raise
        else:
            if not exchange.finished:
                if exchange.started:
                    log.error("ASGI callable returned without completing response.")
                else:
                    log.error("ASGI callable returned without starting response.")
                self._fail(exchange)

    def _fail(self, exchange: _Exchange) -> None:
        """A 500 if nothing was sent yet; in any case the connection closes."""
        if exchange.finished or exchange.disconnected:
            return
        if not exchange.started:
            message = b"Internal Server Error"
            self.write(
                b"%scontent-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n"
                b"connection: close\r\n\r\n%s" % (_status_line(500), len(message), message)
            )
        exchange.finished = True
        exchange.wake()
        assert self.transport is not None
        self.transport.close()

    def answered(self, exchange: _Exchange) -> None:
        """The response went out in full: serve the next request, or close."""
        self.server_state.total_requests += 1
        if self.exchanges and self.exchanges[0] is exchange:
            self.exchanges.popleft()
        if self.incoming is exchange:  # answered before its body was all in: drop it
            exchange.chunks = []
            exchange.buffered = 0
        assert self.transport is not None
        if self.transport.is_closing():
            return
        if not exchange.keep_alive or self.closing:
            self.transport.close()
            return
        self.active_at = self.loop.time()
        if self.exchanges:
            self._serve(self.exchanges[0])
        self.read_on()
