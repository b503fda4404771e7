"""POST /v1/decisions answered below the framework (engine.fast_path) must answer as the
framework does: the same shape for a decision, the same errors."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import orjson
import pytest

from tests.conftest import Running

pytestmark = pytest.mark.integration
DECIDE = {"Authorization": "Bearer test-decide-key-001"}
FAST = {**DECIDE, "Content-Type": "application/json"}
FRAMEWORK = {**DECIDE, "Content-Type": "application/json; charset=utf-8"}  # not the fast path


def post(running: Running, body: object, headers: dict[str, str]) -> httpx.Response:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return httpx.post(f"{running.base_url}/v1/decisions", content=content, headers=headers)


def test_a_decision_has_the_same_shape_either_way(running: Running) -> None:
    body = {"customer_id": "fast-1", "channel": "web", "context": {"device": "mobile"}}
    fast, slow = post(running, body, FAST), post(running, body, FRAMEWORK)
    assert fast.status_code == slow.status_code == 200
    assert fast.headers["content-type"] == slow.headers["content-type"] == "application/json"
    assert set(fast.json()) == set(slow.json())
    assert fast.json()["placement"] == slow.json()["placement"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"customer_id": "fast-2", "channel": "carrier-pigeon"}, "channel"),  # the engine's
        ({"customer_id": "fast-2"}, "channel"),  # the schema's
        ({"customer_id": "fast-2", "channel": "web", "limit": 0}, "limit"),
        # JSON types as sent: no "3" or true for an integer, no "yes" or 1 for a boolean
        ({"customer_id": "fast-2", "channel": "web", "limit": "3"}, "limit"),
        ({"customer_id": "fast-2", "channel": "web", "limit": True}, "limit"),
        ({"customer_id": "fast-2", "channel": "web", "explain": "yes"}, "explain"),
        ({"customer_id": "fast-2", "channel": "web", "explain": 1}, "explain"),
        ({"customer_id": "fast-2", "channel": "web", "context": {"a": {"b": 1}}}, "context.a"),
        (b'{"customer_id": "fast-2", "channel": "web", "context": {"a": 1e400}}', "context.a"),
        (b'{"customer_id": "fast-2", "channel": "web", "context": {"a": NaN}}', "context.a"),
        ({"customer_id": "fast{2}", "channel": "web"}, "customer_id"),
    ],
)
def test_errors_are_the_same_either_way(running: Running, body: object, field: str) -> None:
    fast, slow = post(running, body, FAST), post(running, body, FRAMEWORK)
    assert fast.status_code == slow.status_code == 422
    assert fast.json() == slow.json()
    assert fast.json()["error"]["field"] == field


def test_keys_are_checked_as_the_framework_checks_them(running: Running) -> None:
    body = {"customer_id": "fast-3", "channel": "web"}
    read_only = {"Authorization": "Bearer test-read-key-00001", "Content-Type": "application/json"}
    assert post(running, body, read_only).status_code == 403
    no_key = post(running, body, {"Content-Type": "application/json"})
    assert no_key.status_code == 401 and no_key.headers["www-authenticate"] == "Bearer"
    assert post(running, b"not json", FAST).json()["error"]["field"] == "body"


def test_a_chunked_decision_request_is_decided_by_the_framework(running: Running) -> None:
    """No declared length: the framework's stack, with its body limit, takes it."""
    body = orjson.dumps({"customer_id": "fast-4", "channel": "web"})

    def chunks() -> Iterator[bytes]:
        yield body[:10]
        yield body[10:]

    reply = httpx.post(f"{running.base_url}/v1/decisions", content=chunks(), headers=FAST)
    assert reply.status_code == 200, reply.text
    assert reply.json()["decision_id"].startswith("d-")
