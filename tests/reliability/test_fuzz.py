"""Fuzzing the running API from its own OpenAPI schema (schemathesis), with an admin
key: no 5xx, every 4xx a JSON body naming the problem. Over-limit requests are refused
quickly. The server here has its own Redis, so catalogue PUT/DELETEs made by the fuzzer
never reach the session server's catalogue."""

from __future__ import annotations

import contextlib
import json
import string
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.core.result import Ok

from engine.embedded import free_port
from tests.conftest import Running, auth
from tests.reliability._support import api_env, api_server, start_redis, stop, world_topics

pytestmark = pytest.mark.integration
ADMIN = auth("test-admin-key-0001")
FUZZ = settings(
    max_examples=25,
    deadline=None,  # a network round trip; the per-request bound is the client timeout
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)


@pytest.fixture(scope="module")
def fuzz_server(running: Running, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("fuzz")
    port = free_port()
    redis = start_redis(port, data / "redis")
    world_topics(running.endpoints.kafka_brokers, "fz.")
    env = api_env(
        running, data, NBA_REDIS_URL=f"redis://127.0.0.1:{port}/0", NBA_TOPIC_PREFIX="fz."
    )
    try:
        with api_server(env, data / "serve.log") as base_url:
            yield base_url
    finally:
        stop(redis)


def check_reply(reply: httpx.Response, what: str) -> None:
    """The rules every answer obeys: no 5xx; a 4xx is JSON naming the problem."""
    status = reply.status_code
    assert status < 500, f"{what}: {status} {reply.text[:500]}"
    assert "Traceback" not in reply.text, what
    if 400 <= status < 500:
        try:
            error = orjson.loads(reply.content)["error"]
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise AssertionError(f"{what}: {status} body is not an error: {reply.text}") from exc
        assert isinstance(error.get("message"), str) and error["message"], f"{what}: {error}"
        if status == 422:
            assert isinstance(error.get("field"), str) and error["field"], f"{what}: {error}"


def fuzz_operation(operation: Any, base_url: str) -> None:
    """Positive and negative cases of one operation, sent with the admin key."""
    strategy = operation.as_strategy(GenerationMode.POSITIVE)
    with contextlib.suppress(Exception):  # nothing to make invalid (no parameters, no body)
        strategy = strategy | operation.as_strategy(GenerationMode.NEGATIVE)

    @FUZZ
    @given(case=strategy)
    def run(case: Any) -> None:
        started = time.perf_counter()
        response = case.call(base_url=base_url, headers=ADMIN, timeout=10)
        took = time.perf_counter() - started
        reply = httpx.Response(response.status_code, content=response.content)
        what = f"{case.method} {case.formatted_path} query={case.query!r} body={case.body!r:.300}"
        check_reply(reply, what)
        assert took < 5.0, f"{what} took {took:.1f} s"

    run()


@pytest.mark.slow
def test_no_5xx_and_every_4xx_names_the_problem(fuzz_server: str) -> None:
    """schemathesis over every operation of /openapi.json, ~25 cases each."""
    schema = schemathesis.openapi.from_url(f"{fuzz_server}/openapi.json", timeout=10)
    failures: list[str] = []
    labels = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result  # the schema itself is valid
        operation = result.ok()
        labels.append(operation.label)
        try:
            fuzz_operation(operation, fuzz_server)
        except AssertionError as exc:
            failures.append(f"{operation.label}: {exc}")
    assert len(labels) >= 13, labels
    assert not failures, "\n\n".join(failures)


# /v1/events and PUT /v1/actions/{id} read their body themselves: the schema shows no
# body, so schemathesis sends none. Arbitrary JSON covers them here.
scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
event_like = st.fixed_dictionaries(
    {
        "event_id": st.text(max_size=12) | st.integers(),
        "customer_id": st.text(string.printable, max_size=12) | st.none(),
        "type": st.sampled_from(["page_view", "purchase", "profile", "consent", "nope", ""]),
        "timestamp": st.sampled_from(["2026-01-01T00:00:00Z", "yesterday", "", "1"])
        | st.integers(),
    },
    optional={
        "attributes": json_values,
        "price": st.floats() | st.text(max_size=5),
        "category": json_values,
    },
)
action_like = st.fixed_dictionaries(
    {},
    optional={
        "kind": st.sampled_from(["offer", "banner", "activity", "x"]) | json_values,
        "name": st.text(max_size=20) | json_values,
        "channels": st.lists(st.sampled_from(["web", "shop", "email", "fax"]), max_size=3)
        | json_values,
        "eligibility": st.sampled_from(
            ["customer.age >= 18", "customer.__class__", "(", "x" * 5, "1 +", "now.year"]
        )
        | st.text(max_size=30),
        "value": st.floats() | st.integers() | st.text(max_size=3),
        "contact_policy": json_values,
        "valid_from": st.text(max_size=25) | json_values,
    },
)


@pytest.mark.slow
@FUZZ
@given(body=json_values | event_like | st.lists(event_like, max_size=5))
def test_events_with_arbitrary_json(fuzz_server: str, body: Any) -> None:
    reply = httpx.post(
        f"{fuzz_server}/v1/events", content=json.dumps(body), headers=ADMIN, timeout=10
    )
    check_reply(reply, f"POST /v1/events {body!r:.300}")


@pytest.mark.slow
@FUZZ
@given(
    body=action_like | st.dictionaries(st.text(max_size=10), json_values, max_size=6),
    action_id=st.sampled_from(["fz-a", "fz-b", "BAD ID", "-"]),
)
def test_action_put_with_arbitrary_json(fuzz_server: str, body: Any, action_id: str) -> None:
    reply = httpx.put(
        f"{fuzz_server}/v1/actions/{action_id}",
        content=json.dumps(body),  # big integers and NaN too: the server must cope
        headers=ADMIN,
        timeout=10,
    )
    check_reply(reply, f"PUT /v1/actions/{action_id} {body!r:.300}")


@pytest.mark.parametrize("body", [None, [], 1, "action"], ids=["null", "list", "number", "string"])
def test_action_put_with_a_non_object_body_names_the_body(fuzz_server: str, body: Any) -> None:
    reply = httpx.put(
        f"{fuzz_server}/v1/actions/fz-a", content=orjson.dumps(body), headers=ADMIN, timeout=5
    )
    check_reply(reply, f"PUT /v1/actions/fz-a {body!r}")


@pytest.mark.parametrize("path", ["/v1/decisions", "/v1/decisions/batch", "/v1/responses"])
def test_an_undecodable_body_is_a_422_naming_the_body(fuzz_server: str, path: str) -> None:
    reply = httpx.post(
        fuzz_server + path,
        content=b"\x80\xb4^",
        headers={**ADMIN, "Content-Type": "application/json"},
        timeout=5,
    )
    check_reply(reply, f"POST {path} with a non-UTF-8 body")
    assert reply.status_code == 422


@pytest.mark.parametrize("path", ["/v1/decisions", "/v1/decisions/batch", "/v1/responses"])
def test_invalid_json_is_a_422_naming_the_body(fuzz_server: str, path: str) -> None:
    reply = httpx.post(
        fuzz_server + path,
        content=b'{"customer_id": ',
        headers={**ADMIN, "Content-Type": "application/json"},
        timeout=5,
    )
    assert reply.status_code == 422, reply.text
    assert reply.json()["error"]["field"] == "body", reply.text


def test_unknown_route_and_method_answer_json_errors(fuzz_server: str) -> None:
    """The router's own answers (404, 405) in the contract's error shape."""
    missing = httpx.get(f"{fuzz_server}/v1/nothing", headers=ADMIN)
    assert missing.status_code == 404
    check_reply(missing, "GET /v1/nothing")
    wrong = httpx.patch(f"{fuzz_server}/v1/decisions", headers=ADMIN)
    assert wrong.status_code == 405
    check_reply(wrong, "PATCH /v1/decisions")


# -- over-limit requests -----------------------------------------------------------------

MIB = 1024 * 1024
DECISION = {"customer_id": "fz-limit", "channel": "web"}
EVENT = {
    "event_id": "fz-limit-1",
    "customer_id": "fz-limit",
    "type": "page_view",
    "timestamp": "2026-01-01T00:00:00Z",
}


def timed(method: str, url: str, content: bytes) -> tuple[httpx.Response, float]:
    started = time.perf_counter()
    reply = httpx.request(
        method,
        url,
        content=content,
        headers={**ADMIN, "Content-Type": "application/json"},
        timeout=30,
    )
    return reply, time.perf_counter() - started


def refused_fast(reply: httpx.Response, took: float, what: str) -> None:
    assert reply.status_code in (413, 422), f"{what}: {reply.status_code} {reply.text[:300]}"
    assert took < 1.0, f"{what}: answered in {took:.2f} s"
    error = reply.json()["error"]
    assert error["message"], error


def padded(value: Any, size: int = MIB + 1024) -> bytes:
    """A valid JSON document of ``size`` bytes: the value, then insignificant whitespace."""
    raw = orjson.dumps(value)
    return raw + b" " * (size - len(raw))


OVERSIZED = [
    ("post", "/v1/decisions", DECISION),
    ("post", "/v1/decisions/batch", {"requests": [DECISION]}),
    (
        "post",
        "/v1/responses",
        {"action_id": "summer-shoes-10", "customer_id": "fz-limit", "outcome": "impression"},
    ),
    ("post", "/v1/events", EVENT),
]


@pytest.mark.parametrize(("method", "path", "body"), OVERSIZED, ids=[p for _, p, _ in OVERSIZED])
def test_a_body_over_1_mib_is_refused_fast(
    fuzz_server: str, method: str, path: str, body: Any
) -> None:
    reply, took = timed(method, fuzz_server + path, padded(body))
    refused_fast(reply, took, f"{method} {path} {MIB + 1024} bytes")
    assert reply.status_code == 413


@pytest.mark.parametrize(("method", "path", "body"), OVERSIZED, ids=[p for _, p, _ in OVERSIZED])
def test_a_body_over_1_mib_is_refused_without_a_key_too(
    fuzz_server: str, method: str, path: str, body: Any
) -> None:
    """The limit comes before authentication: nobody makes the server buffer 1 MiB."""
    started = time.perf_counter()
    reply = httpx.request(
        method,
        fuzz_server + path,
        content=padded(body),
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    refused_fast(reply, time.perf_counter() - started, f"{method} {path} without a key")


@pytest.mark.parametrize(("method", "path", "body"), OVERSIZED, ids=[p for _, p, _ in OVERSIZED])
def test_a_chunked_body_over_1_mib_is_refused_fast(
    fuzz_server: str, method: str, path: str, body: Any
) -> None:
    """No Content-Length (chunked transfer): the limit counts the bytes received."""
    content = padded(body, 3 * MIB)

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(content), 64 * 1024):
            yield content[start : start + 64 * 1024]

    started = time.perf_counter()
    reply = httpx.request(
        method,
        fuzz_server + path,
        content=chunks(),
        headers={**ADMIN, "Content-Type": "application/json"},
        timeout=30,
    )
    refused_fast(reply, time.perf_counter() - started, f"chunked {method} {path}")
    assert reply.status_code == 413, reply.text


def test_a_huge_field_over_1_mib_is_refused_fast(fuzz_server: str) -> None:
    body = {**DECISION, "context": {"k": "x" * (MIB + 10)}}
    reply, took = timed("post", f"{fuzz_server}/v1/decisions", orjson.dumps(body))
    refused_fast(reply, took, "decision with a 1 MiB context value")
    field = reply.json()["error"]["field"]
    assert field == "body" if reply.status_code == 413 else field.startswith("context"), field


def test_a_context_of_more_than_64_keys_is_refused_fast(fuzz_server: str) -> None:
    body = {**DECISION, "context": {f"k{i}": i for i in range(65)}}
    reply, took = timed("post", f"{fuzz_server}/v1/decisions", orjson.dumps(body))
    refused_fast(reply, took, "65 context keys")
    assert reply.json()["error"]["field"].startswith("context")
    exactly = {**DECISION, "context": {f"k{i}": i for i in range(64)}}
    ok = httpx.post(f"{fuzz_server}/v1/decisions", json=exactly, headers=ADMIN, timeout=5)
    assert ok.status_code == 200, ok.text


def test_a_batch_of_more_than_1000_is_refused_fast(fuzz_server: str) -> None:
    body = {"requests": [{**DECISION, "customer_id": f"fz-{i}"} for i in range(1001)]}
    reply, took = timed("post", f"{fuzz_server}/v1/decisions/batch", orjson.dumps(body))
    refused_fast(reply, took, "1,001 batch items")
    assert reply.json()["error"]["field"].startswith("requests")


def test_more_than_1000_events_are_refused_fast(fuzz_server: str) -> None:
    body = [{**EVENT, "event_id": f"fz-{uuid.uuid4().hex}"} for _ in range(1001)]
    reply, took = timed("post", f"{fuzz_server}/v1/events", orjson.dumps(body))
    refused_fast(reply, took, "1,001 events")


def test_a_batch_item_with_more_than_64_context_keys_is_answered_in_place(
    fuzz_server: str,
) -> None:
    items = [DECISION, {**DECISION, "context": {f"k{i}": i for i in range(65)}}]
    reply = httpx.post(
        f"{fuzz_server}/v1/decisions/batch", json={"requests": items}, headers=ADMIN, timeout=5
    )
    assert reply.status_code == 200, reply.text
    first, second = reply.json()["decisions"]
    assert "decision_id" in first
    assert second["error"]["field"].startswith("context"), second


def test_the_fuzz_server_is_still_healthy(fuzz_server: str, tmp_path: Path) -> None:
    """Run last in this module: after the fuzzing the server still decides."""
    reply = httpx.post(f"{fuzz_server}/v1/decisions", json=DECISION, headers=ADMIN, timeout=5)
    assert reply.status_code == 200, reply.text
    assert reply.json()["fallback"] is False
