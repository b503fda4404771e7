"""Bad input, route by route (contract §3): a 422 whose body names the field in one clear
message; in a batch, the bad item answered in its place and the others decided."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import Running, auth

pytestmark = pytest.mark.integration
ADMIN = {**auth("test-admin-key-0001"), "Content-Type": "application/json"}
DECISION = b'{"customer_id": "bad-input-1", "channel": "web"'  # the rest per case
RESPONSE = b'{"action_id": "summer-shoes-10", "customer_id": "bad-input-1", "outcome": "click"'
EVENT = {
    "event_id": "bad-input-e1",
    "customer_id": "bad-input-1",
    "type": "page_view",
    "timestamp": "2026-11-24T10:00:00Z",
}
SCALAR = "must be a string"  # of at most 256 characters, a finite number or a boolean
READABLE_ID = "printable ASCII characters without braces"


def post(running: Running, path: str, content: bytes) -> httpx.Response:
    return httpx.post(running.base_url + path, content=content, headers=ADMIN, timeout=5)


def named(reply: httpx.Response, field: str, message: str) -> dict[str, Any]:
    """The reply is one 422 naming ``field``, its message saying ``message``."""
    assert reply.status_code == 422, reply.text
    error: dict[str, Any] = reply.json()["error"]
    assert error["field"] == field, error
    assert error["message"].startswith(f"{field}: "), error
    assert message in error["message"], error
    return error


# -- POST /v1/decisions (the fast path's and the framework's answers: test_fast_path) ----

DECISIONS = [
    (b', "limit": "3"}', "limit", "integer"),
    (b', "limit": true}', "limit", "integer"),
    (b', "limit": 2.5}', "limit", "integer"),
    (b', "explain": "yes"}', "explain", "boolean"),
    (b', "explain": 1}', "explain", "boolean"),
    (b', "context": {"a": {"b": 1}}}', "context.a", SCALAR),
    (b', "context": {"a": [1]}}', "context.a", SCALAR),
    (b', "context": {"a": null}}', "context.a", SCALAR),
    (b', "context": {"a": 1e400}}', "context.a", SCALAR),
    (b', "context": {"a": -1e400}}', "context.a", SCALAR),
    (b', "context": {"a": NaN}}', "context.a", SCALAR),
    (b', "context": {"ok": 1, "a": "' + b"x" * 257 + b'"}}', "context.a", SCALAR),
]


@pytest.mark.parametrize(("rest", "field", "message"), DECISIONS)
def test_a_bad_decision_field_is_one_clear_422(
    running: Running, rest: bytes, field: str, message: str
) -> None:
    error = named(post(running, "/v1/decisions", DECISION + rest), field, message)
    assert [d["field"] for d in error["details"]] == [field], error  # one error, not one a type


def test_a_bad_customer_id_in_a_body_reads_as_the_path_one(running: Running) -> None:
    path = httpx.get(f"{running.base_url}/v1/customers/a%7Bb", headers=ADMIN, timeout=5)
    assert path.status_code == 422 and READABLE_ID in path.json()["error"]["message"], path.text
    for body in (
        b'{"customer_id": "a{b", "channel": "web"}',
        b'{"customer_id": 5, "channel": "web"}',
    ):
        error = named(post(running, "/v1/decisions", body), "customer_id", READABLE_ID)
        assert "\\x21" not in error["message"], error
    named(
        post(running, "/v1/responses", RESPONSE.replace(b"bad-input-1", b"a}b") + b"}"),
        "customer_id",
        READABLE_ID,
    )
    batch = post(running, "/v1/decisions/batch", b'{"requests": [{"customer_id": "a{"}]}')
    assert READABLE_ID in batch.json()["decisions"][0]["error"]["message"], batch.text


# -- POST /v1/decisions/batch -----------------------------------------------------------

BATCH_ITEMS = [
    (b"5", "request", "must be a JSON object"),
    (b'"c-1"', "request", "must be a JSON object"),
    (b"[1, 2]", "request", "must be a JSON object"),
    (b"null", "request", "must be a JSON object"),
    (DECISION + b', "limit": true}', "limit", "integer"),
    (DECISION + b', "limit": "3"}', "limit", "integer"),
    (DECISION + b', "explain": "yes"}', "explain", "boolean"),
    (DECISION + b', "context": {"a": {"b": 1}}}', "context.a", SCALAR),
    (DECISION + b', "context": {"a": NaN}}', "context.a", SCALAR),
    (DECISION + b', "context": {"a": 1e400}}', "context.a", SCALAR),
]


def test_every_bad_batch_item_is_answered_in_its_place(running: Running) -> None:
    items = b", ".join([DECISION + b"}", *(item for item, _, _ in BATCH_ITEMS), DECISION + b"}"])
    reply = post(running, "/v1/decisions/batch", b'{"requests": [' + items + b"]}")
    assert reply.status_code == 200, reply.text
    first, *bad, last = reply.json()["decisions"]
    assert "decision_id" in first and "decision_id" in last, reply.text
    assert len(bad) == len(BATCH_ITEMS)
    for answer, (item, field, message) in zip(bad, BATCH_ITEMS, strict=True):
        assert set(answer) == {"error"}, (item, answer)
        assert answer["error"]["field"] == field, (item, answer)
        assert answer["error"]["message"].startswith(f"{field}: "), (item, answer)
        assert message in answer["error"]["message"], (item, answer)


# -- POST /v1/responses -----------------------------------------------------------------


@pytest.mark.parametrize(
    "rest",
    [b', "value": true}', b', "value": "3"}', b', "value": 1e400}', b', "value": NaN}'],
    ids=["boolean", "string", "infinity", "nan"],
)
def test_a_response_value_must_be_a_finite_number(running: Running, rest: bytes) -> None:
    named(post(running, "/v1/responses", RESPONSE + rest), "value", "number")


def test_a_numeric_response_value_is_accepted(running: Running) -> None:
    for rest in (b', "value": 3}', b', "value": 2.5}', b', "value": null}'):
        reply = post(running, "/v1/responses", RESPONSE + rest)
        assert reply.status_code == 202, reply.text


# -- PUT /v1/actions/{id} ---------------------------------------------------------------


@pytest.mark.parametrize("value", [{"b": 1}, [1], None], ids=["object", "array", "null"])
def test_an_action_attribute_must_be_a_scalar(running: Running, value: Any) -> None:
    body = {
        "kind": "banner",
        "name": "Never stored",
        "channels": ["web"],
        "attributes": {"category": "shoes", "a": value},
    }
    reply = httpx.put(
        f"{running.base_url}/v1/actions/bad-input-action",
        content=orjson.dumps(body),
        headers=ADMIN,
        timeout=5,
    )
    assert reply.status_code == 422, reply.text
    error = reply.json()["error"]
    assert error["field"] == "attributes.a", error
    assert [p["message"] for p in error["problems"]] == [
        "attributes.a: must be a string, number or boolean"
    ], error


# -- POST /v1/events --------------------------------------------------------------------

EVENTS = [
    ([EVENT, 5], "1", "must be a JSON object"),
    ([EVENT, "x"], "1", "must be a JSON object"),
    ("x", "body", "must be a JSON object"),
    (5, "body", "must be a JSON object"),
    (None, "body", "must be a JSON object"),
    ({k: v for k, v in EVENT.items() if k != "type"}, "type", "Field required"),
    ([EVENT, {k: v for k, v in EVENT.items() if k != "type"}], "1.type", "Field required"),
    ({**EVENT, "type": "nope"}, "type", "must be one of"),
    ([EVENT, EVENT, {**EVENT, "type": 5}], "2.type", "must be one of"),
    ([EVENT, {**EVENT, "customer_id": "a{b"}], "1.customer_id", READABLE_ID),
    ({**EVENT, "timestamp": "yesterday"}, "timestamp", "datetime"),
    (
        {**EVENT, "type": "profile", "attributes": {"a": {"b": 1}}},
        "attributes.a",
        "must be a string, number, boolean, null or a list of those",
    ),
    (
        [EVENT, {**EVENT, "type": "profile", "attributes": {"ok": [1, "x"], "a": [{"b": 1}]}}],
        "1.attributes.a",
        "must be a string, number, boolean, null or a list of those",
    ),
]


@pytest.mark.parametrize(("body", "field", "message"), EVENTS)
def test_a_bad_event_is_a_422_naming_where_it_is(
    running: Running, body: Any, field: str, message: str
) -> None:
    named(post(running, "/v1/events", orjson.dumps(body)), field, message)
