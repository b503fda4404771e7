"""A pure-ASGI guard that refuses request bodies over a limit before any routing,
parsing or authentication: an unauthenticated caller cannot make the server buffer a
large body. It answers 413 at once for a declared ``Content-Length`` over the limit, and
stops a chunked body as soon as the bytes received pass it."""

from __future__ import annotations

from typing import Any

import orjson

MAX_BODY_BYTES = 1024 * 1024
TOO_LARGE = "nba.body_too_large"  # set in the scope when a chunked body passed the limit
Scope = dict[str, Any]
Message = dict[str, Any]


class BodyTooLarge(Exception):
    pass


class BodyLimit:
    def __init__(self, app: Any, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await self._refuse(send)
                return
        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received
            message: Message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    scope[TOO_LARGE] = True  # the framework may catch what we raise
                    raise BodyTooLarge
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except BodyTooLarge:
            if not started:
                await self._refuse(send)

    @staticmethod
    def body(limit: int = MAX_BODY_BYTES) -> dict[str, Any]:
        return {
            "error": {
                "code": "body_too_large",
                "field": "body",
                "message": f"request body over {limit} bytes",
            }
        }

    async def _refuse(self, send: Any) -> None:
        body = orjson.dumps(self.body(self.limit))
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
