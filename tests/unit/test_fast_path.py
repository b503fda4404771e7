"""The hot route's layer answers every error itself: it runs in front of the framework's
error guard, so nothing it raises may leave as a bare 500 or a stack trace."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from engine.auth import KeyRing
from engine.errors import INTERNAL_ERROR, BadRequest
from engine.fast_path import FastDecisions

KEY = "unit-decide-key-0001"
BODY = b'{"customer_id": "c-1", "channel": "web"}'


def call(decide: Any) -> tuple[int, Any, bool]:
    """(status, JSON body, whether the framework was called) for one well-formed request."""
    sent: list[dict[str, Any]] = []
    framework_called = False

    async def framework(scope: Any, receive: Any, send: Any) -> None:
        nonlocal framework_called
        framework_called = True

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": BODY, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "path": "/v1/decisions",
        "method": "POST",
        "headers": [
            (b"content-type", b"application/json"),
            (b"authorization", f"Bearer {KEY}".encode()),
            (b"content-length", b"%d" % len(BODY)),
        ],
    }
    layer = FastDecisions(framework, KeyRing({KEY: ["decide"]}), decide)
    asyncio.run(layer(scope, receive, send))
    if framework_called:
        return 0, None, True
    return sent[0]["status"], orjson.loads(sent[1]["body"]), False


async def answers(_: Any) -> dict[str, Any]:
    return {"decision_id": "d-1", "actions": []}


async def fails(_: Any) -> dict[str, Any]:
    raise RuntimeError("a bug")


async def refuses(_: Any) -> dict[str, Any]:
    raise BadRequest("channel: unknown", "channel")


async def unserialisable(_: Any) -> dict[str, Any]:
    return {"decision_id": "d-1", "actions": {object()}}


def test_a_decision_is_answered_by_the_layer() -> None:
    assert call(answers) == (200, {"decision_id": "d-1", "actions": []}, False)


def test_an_engine_error_keeps_its_status_and_body() -> None:
    status, body, _ = call(refuses)
    assert status == 422 and body["error"]["field"] == "channel"


@pytest.mark.parametrize("decide", [fails, unserialisable], ids=["raises", "unserialisable"])
def test_anything_else_is_the_contracts_500(decide: Any) -> None:
    assert call(decide) == (500, INTERNAL_ERROR.body(), False)
