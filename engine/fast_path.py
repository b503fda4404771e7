"""The hot route, ``POST /v1/decisions``, answered in front of the framework when the
request is well-formed.

FastAPI's routing, dependency injection and response machinery cost about a quarter of
the API process's CPU under load (py-spy, at 800 decisions/s), more than the decision's
rules and model. A well-formed request with a key that holds the ``decide`` scope does
not need any of it: this ASGI layer checks the key, parses the body with the route's
own pydantic model, decides and answers. Everything else (no key, a bad body, another
route) goes on to the application untouched, with the body replayed, so every error is
the one the framework gives and the OpenAPI schema still describes the route.

It sits in front of the whole application (:class:`engine.api.DecisionService`), not in
its middleware stack: there, five layers (Starlette's error guard, FastAPI's telemetry and
body limit, ours) each wrapped the call and its ``send`` for every decision. The body
limit still holds: only a request that declares a length within it comes this way; any
other goes through the framework's stack, which refuses it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson
from pydantic import ValidationError

from engine.auth import KeyRing
from engine.errors import INTERNAL_ERROR, NbaError
from engine.limits import MAX_BODY_BYTES
from engine.schemas import DecisionRequest

log = logging.getLogger("nba.api")
PATH = "/v1/decisions"
Scope = MutableMapping[str, Any]
Message = dict[str, Any]
Decide = Callable[[DecisionRequest], Awaitable[dict[str, Any]]]
_JSON_HEADERS = [(b"content-type", b"application/json")]


class FastDecisions:
    def __init__(
        self, app: Any, keys: KeyRing, decide: Decide, limit: int = MAX_BODY_BYTES
    ) -> None:
        self.app = app
        self.keys = keys
        self.decide = decide
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] != PATH
            or scope["method"] != "POST"
            or not self._may_decide(scope)
        ):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message: Message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        try:
            request = DecisionRequest.model_validate_json(body)
        except ValidationError:  # the framework words the 422
            await self.app(scope, _replay(body), send)
            return
        try:  # in front of the framework's error guard: every error answered here
            status, payload = 200, orjson.dumps(await self.decide(request))
        except NbaError as exc:
            status, payload = exc.status, orjson.dumps(exc.body())
        except Exception as exc:  # as the application's handler answers it
            log.error("unhandled error: %s", type(exc).__name__)
            status, payload = 500, orjson.dumps(INTERNAL_ERROR.body())
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [*_JSON_HEADERS, (b"content-length", b"%d" % len(payload))],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    def _may_decide(self, scope: Scope) -> bool:
        """A JSON body of a declared length within the limit and a key with the decide
        scope; anything else is the framework's."""
        authorization = content_type = length = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
            elif name == b"content-type":
                content_type = value
            elif name == b"content-length":
                length = value
        if content_type != b"application/json" or authorization is None:
            return False
        if length is None or not length.isdigit() or int(length) > self.limit:
            return False
        try:
            self.keys.check(authorization.decode("latin-1"), "decide")
        except NbaError:
            return False
        return True


def _replay(body: bytes) -> Callable[[], Awaitable[Message]]:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:  # the body was read in full: what follows is the end of the request
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive
