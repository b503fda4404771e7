"""Serving encodes a decision's candidates exactly as training encodes each row: the
bound layout's shortcuts (precomputed action rows, one gather for the crosses) must not
change a single value, whatever the customer and context hold."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from models.layout import FeatureLayout

CATEGORIES = ["shoes", "bags", "home"]
ACTIONS = [
    {"id": f"a{i}", "category": CATEGORIES[i % 3], "band": "lh"[i % 2], "value": float(i)}
    for i in range(7)
]


def _layout() -> FeatureLayout:
    customers = [
        {
            "age": 20 + i,
            "vip": i % 2 == 0,
            "segment": "xy"[i % 2],
            "favourite": CATEGORIES[i % 3],
            **{f"views_{c}": i % 4 for c in CATEGORIES},
        }
        for i in range(30)
    ]
    contexts = [{"page": CATEGORIES[i % 3], "device": "mt"[i % 2]} for i in range(30)]
    return FeatureLayout.infer(customers, contexts, ACTIONS * 5, min_count=2)


LAYOUT = _layout()
BOUND = LAYOUT.bind(ACTIONS)

values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.floats(-1e6, 1e6, allow_nan=False, width=32),
    st.sampled_from([*CATEGORIES, "x", "y", "m", "t", "other"]),
    st.floats(-10, 10, width=32).map(np.float64),  # a float subclass
    st.just(["a", "list"]),
)
keys = ["age", "vip", "segment", "favourite", "views_shoes", "views_bags", "views_home", "new"]


@settings(max_examples=300, deadline=None)
@given(
    customer=st.dictionaries(st.sampled_from(keys), values),
    context=st.dictionaries(st.sampled_from(["page", "device", "other"]), values),
    picked=st.lists(st.integers(0, len(ACTIONS) - 1), min_size=1, max_size=10),
)
def test_serving_encodes_like_training(
    customer: dict[str, Any], context: dict[str, Any], picked: list[int]
) -> None:
    assert any(spec.kind == "match" for spec in LAYOUT.specs)
    assert any(spec.kind == "lookup" for spec in LAYOUT.specs)
    idx = np.asarray(picked, dtype=np.intp)
    served = BOUND.encode(customer, context, idx)
    for row, i in zip(served, picked, strict=True):
        action = ACTIONS[i]
        trained = LAYOUT.encode(customer, context, [action], LAYOUT.action_row(action)[None, :])
        np.testing.assert_array_equal(row, trained[0])


def _request_row_by_spec(customer: dict[str, Any], context: dict[str, Any]) -> np.ndarray:
    """The request's columns read off the specs one by one: what the layout means."""
    row = np.zeros(LAYOUT.width, dtype=np.float32)
    sources = {"customer": customer, "context": context}
    for col, spec in enumerate(LAYOUT.specs):
        if spec.source not in sources:
            continue
        value = sources[spec.source].get(spec.key)
        if spec.kind == "numeric" and isinstance(value, int | float):  # a bool is an int
            row[col] = float(value)
        elif spec.kind == "onehot" and str(value) == spec.value:
            row[col] = 1.0
    return row


@settings(max_examples=300, deadline=None)
@given(
    customer=st.dictionaries(st.sampled_from(keys), values),
    context=st.dictionaries(st.sampled_from(["page", "device", "other"]), values),
)
def test_the_request_row_is_what_the_specs_say(
    customer: dict[str, Any], context: dict[str, Any]
) -> None:
    assert any(spec.kind == "numeric" and spec.source == "customer" for spec in LAYOUT.specs)
    assert any(spec.kind == "onehot" and spec.source == "context" for spec in LAYOUT.specs)
    np.testing.assert_array_equal(
        LAYOUT.request_row(customer, context), _request_row_by_spec(customer, context)
    )
