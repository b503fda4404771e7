"""The request bodies' validation (engine.schemas, engine.events): JSON types kept as
sent, one clear error a field, the same verdict whether the fast path parses the raw
body or the framework parses its ``json.loads``."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from engine.domain import Action
from engine.errors import BadRequest
from engine.events import CUSTOMER_ID_RULE, CrmEvent, ResponseEvent, posted_event
from engine.schemas import BatchRequest, DecisionRequest, ResponseRequest, batch_item
from engine.validation import first_error

GOOD = {"customer_id": "c-1", "channel": "web"}
EVENT = {"event_id": "e-1", "customer_id": "c-1", "type": "page_view", "timestamp": "2026-01-01"}
SCALAR = "must be a string of at most 256 characters, a finite number or a boolean"

scalars = (
    st.text(max_size=256)
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=6,
)
not_scalars = (
    st.none()
    | st.lists(json_values, max_size=3)
    | st.dictionaries(st.text(max_size=4), json_values, max_size=3)
    | st.sampled_from([math.inf, -math.inf, math.nan])
    | st.text(min_size=257, max_size=300)
)


def both_ways(body: dict[str, Any]) -> tuple[Any, Any]:
    """What the fast path makes of the raw body (JSON mode) and what the framework makes
    of it (``json.loads``, then Python mode): a model, or the errors' (field, type)."""
    raw = json.dumps(body)  # NaN and Infinity as Python's json writes and reads them

    def run(parse: Any) -> Any:
        try:
            return parse()
        except ValidationError as exc:
            return [(e["loc"], e["type"]) for e in exc.errors()]

    return (
        run(lambda: DecisionRequest.model_validate_json(raw)),
        run(lambda: DecisionRequest.model_validate(json.loads(raw))),
    )


@given(key=st.text(min_size=1, max_size=64), value=scalars)
def test_a_scalar_context_value_is_kept_as_sent(key: str, value: Any) -> None:
    fast, framework = both_ways({**GOOD, "context": {key: value}})
    assert isinstance(fast, DecisionRequest) and fast == framework
    assert type(fast.context[key]) is type(value) and fast.context[key] == value


@given(key=st.text(min_size=1, max_size=64), value=not_scalars)
def test_any_other_context_value_is_one_error_at_its_key(key: str, value: Any) -> None:
    fast, framework = both_ways({**GOOD, "context": {key: value}})
    assert fast == framework == [(("context", key), "invalid_value")]
    with pytest.raises(ValidationError) as caught:
        DecisionRequest.model_validate({**GOOD, "context": {key: value}})
    assert first_error(caught.value) == (f"context.{key}", SCALAR)


@given(limit=json_values | st.text(max_size=3))
def test_limit_is_an_integer_from_1_to_20(limit: Any) -> None:
    fast, framework = both_ways({**GOOD, "limit": limit})
    valid = type(limit) is int and 1 <= limit <= 20
    assert isinstance(fast, DecisionRequest) is valid
    if valid:
        assert fast.limit == limit == framework.limit
    else:
        assert [loc for loc, _ in fast] == [loc for loc, _ in framework] == [("limit",)]


@given(explain=json_values)
def test_explain_is_a_boolean(explain: Any) -> None:
    fast, framework = both_ways({**GOOD, "explain": explain})
    if type(explain) is bool:
        assert fast.explain is explain is framework.explain
    else:
        assert fast == framework == [(("explain",), "bool_type")]


@pytest.mark.parametrize("customer_id", ["a{b", "a}b", "", "x" * 129, "é", "a b", 5, None])
def test_a_bad_customer_id_reads_as_words_not_a_pattern(customer_id: Any) -> None:
    for model, body in ((DecisionRequest, GOOD), (ResponseRequest, {"action_id": "a"})):
        with pytest.raises(ValidationError) as caught:
            model.model_validate({**body, "outcome": "click", "customer_id": customer_id})
        assert first_error(caught.value) == ("customer_id", CUSTOMER_ID_RULE)


@pytest.mark.parametrize("value", [True, "3", math.inf, math.nan, 1e13, [1]])
def test_a_response_value_is_a_finite_number(value: Any) -> None:
    body = {"action_id": "a", "customer_id": "c", "outcome": "click", "value": value}
    for model, extra in ((ResponseRequest, {}), (ResponseEvent, {"event_id": "e", **EVENT})):
        with pytest.raises(ValidationError) as caught:
            model.model_validate({**extra, **body})
        assert first_error(caught.value)[0] == "value"
    assert ResponseRequest.model_validate({**body, "value": 3}).value == 3.0


@given(item=json_values.filter(lambda v: not isinstance(v, dict)))
def test_a_batch_item_that_is_not_an_object_is_refused_in_its_place(item: Any) -> None:
    answer = batch_item(item)
    assert isinstance(answer, BadRequest)
    assert (answer.field, answer.message) == ("request", "request: must be a JSON object")
    assert BatchRequest.model_validate({"requests": [GOOD, item]}).requests[1] == item


@pytest.mark.parametrize(
    ("item", "field"),
    [
        ({**GOOD, "limit": True}, "limit"),
        ({**GOOD, "context": {"a": math.nan}}, "context.a"),
        ({**GOOD, "surprise": 1}, "surprise"),
        ({"channel": "web"}, "customer_id"),
    ],
)
def test_a_bad_batch_item_names_its_field_within_the_item(item: Any, field: str) -> None:
    answer = batch_item(item)
    assert isinstance(answer, BadRequest) and answer.field == field
    assert answer.message.startswith(f"{field}: ")


def test_the_schemas_show_what_to_send() -> None:
    """The OpenAPI schema is the types' own: the checks added here do not change it."""
    decision = DecisionRequest.model_json_schema()["properties"]
    assert decision["limit"] == {
        "default": 1,
        "maximum": 20,
        "minimum": 1,
        "title": "Limit",
        "type": "integer",
    }
    assert decision["explain"]["type"] == "boolean"
    assert decision["customer_id"]["pattern"] == r"^[\x21-\x7a\x7c\x7e]{1,128}$"
    assert [s["type"] for s in decision["context"]["additionalProperties"]["anyOf"]] == [
        "string",
        "boolean",
        "integer",
        "number",
    ]
    requests = BatchRequest.model_json_schema()["properties"]["requests"]
    assert requests["items"] == {"type": "object", "additionalProperties": True}
    assert (requests["minItems"], requests["maxItems"]) == (1, 1000)
    value = ResponseRequest.model_json_schema()["properties"]["value"]["anyOf"][0]
    assert value == {"maximum": 1e12, "minimum": -1e12, "type": "number"}


# -- POST /v1/events --------------------------------------------------------------------


def refusal(item: Any, place: int | None) -> tuple[str | None, str]:
    with pytest.raises(BadRequest) as caught:
        posted_event(item, place)
    return caught.value.field, caught.value.message


@given(item=json_values.filter(lambda v: not isinstance(v, dict)), place=st.integers(0, 999))
def test_an_event_that_is_not_an_object_is_named_by_its_place(item: Any, place: int) -> None:
    assert refusal(item, place) == (str(place), f"{place}: must be a JSON object")
    assert refusal(item, None) == (
        "body",
        "body: must be a JSON object or an array of JSON objects",
    )


@pytest.mark.parametrize(
    ("item", "field", "message"),
    [
        ({k: v for k, v in EVENT.items() if k != "type"}, "type", "Field required"),
        ({**EVENT, "type": "teleport"}, "type", "must be one of page_view,"),
        ({**EVENT, "type": None}, "type", "must be one of page_view,"),
        ({**EVENT, "customer_id": "a{"}, "customer_id", CUSTOMER_ID_RULE),
        ({**EVENT, "price": True}, "price", "Input should be a valid number"),
        (
            {**EVENT, "type": "profile", "attributes": {"a": {"b": 1}}},
            "attributes.a",
            "must be a string, number",
        ),
        (
            {**EVENT, "type": "profile", "attributes": {"a": [[1]]}},
            "attributes.a",
            "must be a string, number",
        ),
    ],
)
def test_a_bad_event_is_named_by_its_field(item: Any, field: str, message: str) -> None:
    assert refusal(item, None)[0] == field
    assert refusal(item, None)[1].startswith(f"{field}: {message}")
    assert refusal(item, 3)[0] == f"3.{field}"
    assert refusal(item, 3)[1].startswith(f"3.{field}: {message}")


def test_a_good_event_is_routed_by_its_type() -> None:
    assert posted_event(EVENT, 0)[0] == "clickstream"
    profile = {**EVENT, "type": "profile", "attributes": {"a": [1, "x"], "b": None, "c": True}}
    name, event = posted_event(profile)
    assert name == "crm" and isinstance(event, CrmEvent) and event.attributes["a"] == [1, "x"]


# -- the catalogue ----------------------------------------------------------------------


@pytest.mark.parametrize("value", [{"b": 1}, [1], None])
def test_an_action_attribute_that_is_not_a_scalar_is_one_error(value: Any) -> None:
    body = {"id": "a", "kind": "offer", "name": "A", "channels": ["web"]}
    with pytest.raises(ValidationError) as caught:
        Action.model_validate({**body, "attributes": {"ok": 1, "a": value}})
    assert [(e["loc"], e["msg"]) for e in caught.value.errors()] == [
        (("attributes", "a"), "must be a string, number or boolean")
    ]
