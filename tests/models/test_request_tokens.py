"""A request's tokens, however they were found (cached by value, by bucket, or new), are
those of each attribute hashed afresh, in order: the caches change the cost, never the
tokens."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from models.hashing import GLOBAL_BIAS, Hasher, _entry

KEYS = st.sampled_from(["age", "clv", "views_shoes", "views_bags", "_ts", "_x", "segment", "a_b"])
VALUES = st.one_of(
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-1e6, 1e6),
    st.booleans(),
    st.sampled_from(["gold", "shoes", "", "1"]),
    st.none(),
    st.lists(st.integers(), max_size=2),
)
ATTRIBUTES = st.dictionaries(KEYS, VALUES, max_size=8)
SHARED = Hasher(bits=12)  # one hasher across examples: later ones meet warm caches


def fresh(customer: dict[str, Any], context: dict[str, Any]) -> tuple[list[int], ...]:
    tokens, crossing, values = [GLOBAL_BIAS], [], []
    for source, mapping in (("customer", customer), ("context", context)):
        for key, value in mapping.items():
            found = None if key.startswith("_") else _entry(source, key, value)
            if found is not None:
                tokens.append(found[0])
                if found[1]:
                    crossing.append(found[1])
                    values.append(found[2])
    return tokens, crossing, values


@settings(max_examples=300, deadline=None)
@given(ATTRIBUTES, ATTRIBUTES)
def test_request_tokens_are_each_attribute_hashed_afresh(
    customer: dict[str, Any], context: dict[str, Any]
) -> None:
    tokens, crossing, values = fresh(customer, context)
    for hasher in (Hasher(bits=12), SHARED, SHARED):
        packed, n, c, _, _ = hasher.packed_request(customer, context)
        assert (n, c) == (len(tokens), len(crossing))
        assert packed.tolist() == tokens + crossing + values
        part = hasher.request(customer, context)
        assert part.tokens.tolist() == tokens
        assert part.crossing.tolist() == crossing and part.values.tolist() == values
