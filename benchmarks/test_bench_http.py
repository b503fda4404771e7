"""The HTTP layer's CPU per request, uvicorn's httptools protocol against the API's own
(engine.http_protocol), side by side in one process.

Both servers and their clients run on one event loop, with the same bare ASGI app; the
rounds alternate between the two, so a noisy machine slows both alike. A request's CPU
time (``time.process_time``, kernel included) counts the client's share too, the same on
both sides: the difference between the two is the protocols' own.

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


def test_http_protocol_cpu_per_request() -> None:
    per_request = uvloop.run(_measure())
    uvicorn_us = statistics.median(per_request["uvicorn"]) * 1e6
    lean_us = statistics.median(per_request["lean"]) * 1e6
    _collected["http_cpu_per_request_uvicorn"] = {
        "p50_us": uvicorn_us,
        "p90_us": uvicorn_us,
        "p99_us": uvicorn_us,
        "note": "client and server CPU per request, median of rounds",
    }
    _collected["http_cpu_per_request_lean"] = {
        "p50_us": lean_us,
        "p90_us": lean_us,
        "p99_us": lean_us,
        "ratio_to_uvicorn": lean_us / uvicorn_us,
        "saved_us": uvicorn_us - lean_us,
    }
    print(_collected["http_cpu_per_request_uvicorn"], _collected["http_cpu_per_request_lean"])
    assert lean_us > 0 and uvicorn_us > 0
