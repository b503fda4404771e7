"""The HTTP layer's CPU per request, uvicorn's httptools protocol against the API's own
(engine.http_protocol), side by side in one process.

Both servers and their clients run on one event loop, with the same bare ASGI app; the
rounds alternate between the two, so a noisy machine slows both alike. A request's CPU
time (``time.process_time``, kernel included) counts the client's share too, the same on
both sides: the difference between the two is the protocols' own.

The second benchmark measures where the hot route sits (``engine.fast_path``): in front
of FastAPI's middleware stack, or as its innermost middleware, alternated in one process.

Run: ``.venv/bin/python -m pytest benchmarks/test_bench_http.py -m benchmark -s``
"""

from __future__ import annotations

import asyncio
import statistics
import time
from email.utils import formatdate
from typing import Any

import pytest
import uvicorn
import uvloop
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from benchmarks.conftest import _collected
from engine.embedded import free_port
from engine.http_protocol import LeanHttpProtocol

pytestmark = pytest.mark.benchmark

BODY = b'{"customer_id":"c-00123","channel":"web","placement":"home_hero","context":{}}'
REQUEST = (
    b"POST /v1/decisions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
    b"authorization: Bearer key\r\ncontent-length: %d\r\n\r\n%s" % (len(BODY), BODY)
)
ANSWER = b'{"decision_id":"d","actions":[{"action_id":"a1","score":0.5}]}'
CONNECTIONS = 8
PER_CONNECTION = 250  # requests per connection and round
ROUNDS = 30


async def bare_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    while (await receive()).get("more_body"):
        pass
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(ANSWER))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": ANSWER})


class Client(asyncio.Protocol):
    """One keep-alive connection asking one request at a time."""

    def __init__(self) -> None:
        self.buffer = b""
        self.answered: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        length = int(self.buffer.lower().split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
        if len(self.buffer) >= end + 4 + length:
            self.buffer = self.buffer[end + 4 + length :]
            assert self.answered is not None
            self.answered.set_result(None)

    async def ask(self) -> None:
        self.answered = asyncio.get_running_loop().create_future()
        self.transport.write(REQUEST)
        await self.answered


async def _serve(protocol: Any, port: int) -> asyncio.Server:
    config = uvicorn.Config(bare_app, lifespan="off", log_level="warning", access_log=False)
    config.load()
    state = ServerState()
    state.default_headers = [  # as uvicorn's server sets them, once a second
        (b"date", formatdate(usegmt=True).encode()),
        *config.encoded_headers,
    ]
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: protocol(config=config, server_state=state, app_state={}, _loop=loop),
        "127.0.0.1",
        port,
    )


async def _measure() -> dict[str, list[float]]:
    loop = asyncio.get_running_loop()
    sides = {"uvicorn": HttpToolsProtocol, "lean": LeanHttpProtocol}
    servers, clients = [], {}
    for name, protocol in sides.items():
        port = free_port()
        servers.append(await _serve(protocol, port))
        clients[name] = [
            (await loop.create_connection(Client, "127.0.0.1", port))[1] for _ in range(CONNECTIONS)
        ]

    async def one_round(connections: list[Client]) -> float:
        async def ask_many(client: Client) -> None:
            for _ in range(PER_CONNECTION):
                await client.ask()

        started = time.process_time()
        await asyncio.gather(*(ask_many(c) for c in connections))
        return (time.process_time() - started) / (PER_CONNECTION * len(connections))

    per_request: dict[str, list[float]] = {name: [] for name in sides}
    for n in range(ROUNDS + 2):
        order = list(sides) if n % 2 else list(reversed(sides))
        for name in order:
            cost = await one_round(clients[name])
            if n >= 2:  # the first two rounds warm up
                per_request[name].append(cost)
    for connections in clients.values():
        for client in connections:
            client.transport.close()
    for server in servers:
        server.close()
    return per_request


def _record_pair(
    before: str, before_s: list[float], after: str, after_s: list[float], ratio: str, note: str
) -> tuple[float, float]:
    """Two medians of rounds (µs) kept side by side: ``after`` with its ratio to ``before``."""
    before_us = statistics.median(before_s) * 1e6
    after_us = statistics.median(after_s) * 1e6
    _collected[before] = {"p50_us": before_us, "p90_us": before_us, "p99_us": before_us}
    _collected[before]["note"] = note
    _collected[after] = {"p50_us": after_us, "p90_us": after_us, "p99_us": after_us}
    _collected[after] |= {ratio: after_us / before_us, "saved_us": before_us - after_us}
    print(_collected[before], _collected[after])
    return before_us, after_us


def test_http_protocol_cpu_per_request() -> None:
    per_request = uvloop.run(_measure())
    uvicorn_us, lean_us = _record_pair(
        "http_cpu_per_request_uvicorn",
        per_request["uvicorn"],
        "http_cpu_per_request_lean",
        per_request["lean"],
        "ratio_to_uvicorn",
        "client and server CPU per request, median of rounds",
    )
    assert lean_us > 0 and uvicorn_us > 0


# ---- where the hot route sits: in front of FastAPI's stack, or inside it -------------------
DECIDE_KEY = "bench-decide-key-01"
SCOPE = {
    "type": "http",
    "asgi": {"version": "3.0"},
    "http_version": "1.1",
    "method": "POST",
    "scheme": "http",
    "path": "/v1/decisions",
    "root_path": "",
    "query_string": b"",
    "server": ("127.0.0.1", 8000),
    "client": ("127.0.0.1", 50000),
    "headers": [
        (b"host", b"127.0.0.1"),
        (b"content-type", b"application/json"),
        (b"authorization", b"Bearer " + DECIDE_KEY.encode()),
        (b"content-length", b"%d" % len(BODY)),
    ],
}


def _services(in_front: bool) -> Any:
    """The API's application with a decision that costs nothing, so what is measured is
    the route's way through the ASGI layers: in front of FastAPI's middleware stack (as
    ``create_app`` puts it) or as its innermost middleware (as before 2026-12-07)."""
    from engine.api import DecisionService
    from engine.auth import KeyRing
    from engine.fast_path import FastDecisions
    from engine.limits import BodyLimit

    keys = KeyRing({DECIDE_KEY: ["decide"]})

    async def decide(_: Any) -> dict[str, Any]:
        return {"decision_id": "d", "actions": []}

    app = DecisionService(telemetry={"tracing": False, "metrics": False, "logs": False})
    if in_front:
        app.front = FastDecisions(app.framework, keys, decide)
    else:
        app.add_middleware(FastDecisions, keys=keys, decide=decide)
    app.add_middleware(BodyLimit)
    return app


async def _route_rounds(rounds: int = 12, per_round: int = 5000) -> dict[str, list[float]]:
    apps = {"in_front": _services(True), "inside": _services(False)}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": BODY, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    per_request: dict[str, list[float]] = {name: [] for name in apps}
    for n in range(rounds + 2):
        for name in list(apps) if n % 2 else list(reversed(apps)):
            app = apps[name]
            sent.clear()
            started = time.process_time()
            for _ in range(per_round):
                await app(dict(SCOPE), receive, send)
            cost = (time.process_time() - started) / per_round
            assert sent[0]["status"] == 200, sent[:2]  # decided, not refused
            if n >= 2:
                per_request[name].append(cost)
    return per_request


def test_hot_route_in_front_of_the_framework() -> None:
    per_request = uvloop.run(_route_rounds())
    inside_us, front_us = _record_pair(
        "hot_route_cpu_inside_the_framework",
        per_request["inside"],
        "hot_route_cpu_in_front_of_the_framework",
        per_request["in_front"],
        "ratio_to_inside",
        "ASGI layers and the fast path's own work, a free decision, median of rounds",
    )
    assert front_us > 0 and inside_us > 0
