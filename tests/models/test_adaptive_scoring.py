"""The adaptive model as the engine scores with it: blended with a base model, the
logged selection probabilities, and request hashing that does not depend on history."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.adaptive import AdaptiveModel, Moments, NormalPool
from models.blended import BlendedScorer
from models.hashing import GLOBAL_BIAS, Hasher, _entry, logit


class FixedBase:
    version = "v7"

    def __init__(self, probabilities: list[float]) -> None:
        self.probabilities = np.array(probabilities)

    def score(self, customer: Any, context: Any, action_indices: Any) -> np.ndarray:
        found: np.ndarray = self.probabilities[np.asarray(action_indices)]
        return found


def test_blended_scorer_starts_from_the_base_model_and_corrects_it() -> None:
    views = [{"id": "a", "category": "shoes"}, {"id": "b", "category": "bags"}]
    adaptive = AdaptiveModel(dims=2**12, seed=0)
    scorer = BlendedScorer(adaptive, views, base=FixedBase([0.3, 0.6]), seed=0)
    assert scorer.version == "v7+adaptive"
    assert scorer.mean({}, {}, np.array([0, 1])) == pytest.approx([0.3, 0.6])
    offsets = scorer.offsets({}, {}, [0, 1])
    assert offsets == pytest.approx(logit(np.array([0.3, 0.6])))
    for _ in range(100):  # this customer takes "a" and never "b": the base has it backwards
        adaptive.update({"segment": "gold"}, {}, views[0], 1.0, offset=float(offsets[0]))
        adaptive.update({"segment": "gold"}, {}, views[1], 0.0, offset=float(offsets[1]))
    corrected = scorer.mean({"segment": "gold"}, {}, np.array([0, 1]))
    assert corrected[0] > 0.9 > 0.1 > corrected[1]


def test_selection_probabilities_match_the_sampler() -> None:
    views = [{"id": f"a{i}"} for i in range(4)]
    scorer = BlendedScorer(
        AdaptiveModel(dims=2**10, seed=1), views, priors=[0.1, 0.1, 0.2, 0.02], seed=1, draws=4000
    )
    rows = np.arange(4)
    estimate = scorer.selection_probabilities({}, {}, rows)
    assert estimate.sum() == pytest.approx(1.0)
    wins = np.bincount([int(np.argmax(scorer.score({}, {}, rows))) for _ in range(4_000)], None, 4)
    np.testing.assert_allclose(estimate, wins / 4_000, atol=0.05)  # 4,000 draws each: se ≤ 0.011
    assert estimate[2] > estimate[0] > estimate[3]
    weighted = scorer.selection_probabilities({}, {}, rows, weights=np.array([1, 1, 1, 1e6]))
    assert weighted[3] > 0.9


def test_selection_probabilities_skip_hopeless_candidates_and_agree_with_fresh_draws() -> None:
    moments = Moments(
        mean=np.array([0.0, 0.2, -12.0, 0.1]),
        variance=np.array([0.3, 0.3, 0.3, 0.3]),
        shared_mean=0.0,
        shared_variance=0.5,
    )
    weights = np.array([1.0, 1.0, 1.0, 1.2])
    rng = np.random.default_rng(4)
    fresh = moments.selection_probabilities(rng, 20_000, weights)
    pooled = moments.selection_probabilities(rng, 10_000, weights, NormalPool(rng, size=1 << 18))
    assert fresh[2] == pooled[2] == 0.0  # 12 logits behind: never first, never drawn
    assert fresh.sum() == pytest.approx(1.0) and pooled.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(pooled, fresh, atol=0.025)  # se of each ≤ 0.005
    unweighted = moments.selection_probabilities(rng, 20_000)
    assert unweighted[2] == 0.0 and unweighted[1] > unweighted[3] > unweighted[0]


def test_a_candidate_beyond_reach_of_all_others_is_chosen_for_certain() -> None:
    moments = Moments(
        mean=np.array([-9.0, 3.0, -8.0]),
        variance=np.array([0.2, 0.2, 0.2]),
        shared_mean=0.0,
        shared_variance=0.5,
    )
    rng = np.random.default_rng(1)
    for weights in (None, np.array([1.0, 1.0, 1.0])):
        assert moments.selection_probabilities(rng, 100, weights).tolist() == [0.0, 1.0, 0.0]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.dictionaries(
            st.sampled_from(["age", "clv", "views_1h_shoes", "segment", "vip", "_ts"]),
            st.one_of(
                st.floats(allow_nan=True, allow_infinity=True),
                st.integers(-(10**20), 10**20),
                st.booleans(),
                st.sampled_from(["gold", "silver"]),
            ),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_request_tokens_do_not_depend_on_what_the_cache_saw_before(
    customers: list[dict[str, Any]],
) -> None:
    warm = Hasher(bits=12)
    for customer in customers:  # a hasher that saw the others first, and a fresh one
        seen, fresh = warm.request(customer, {}), Hasher(bits=12).request(customer, {})
        assert seen.tokens.tolist() == fresh.tokens.tolist()
        assert seen.crossing.tolist() == fresh.crossing.tolist()
        assert seen.values.tolist() == fresh.values.tolist()


VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(10**20), 10**20),
    st.booleans(),
    st.sampled_from(["gold", "silver"]),
    st.lists(st.integers(), max_size=2),
)
KEYS = st.sampled_from(["age", "clv", "views_1h_shoes", "segment", "vip", "_ts", "page"])


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(KEYS, VALUES, max_size=7), st.dictionaries(KEYS, VALUES, max_size=4))
def test_request_tokens_are_each_values_own_entry(
    customer: dict[str, Any], context: dict[str, Any]
) -> None:
    """The request's tokens, item by item, as the module's docstring defines them:
    what :func:`models.hashing._entry` makes of each value (a boolean as its word; a key
    starting with ``_`` skipped), whatever shortcut the cache takes."""
    expected: list[tuple[int, int, int]] = []
    for source, mapping in (("customer", customer), ("context", context)):
        for key, value in mapping.items():
            if key.startswith("_"):
                continue
            word = ("true" if value else "false") if isinstance(value, bool) else value
            entry = _entry(source, key, word)
            if entry is not None:
                expected.append(entry)
    request = Hasher(bits=12).request(customer, context)
    assert request.tokens.tolist() == [GLOBAL_BIAS, *(e[0] for e in expected)]
    assert request.crossing.tolist() == [e[1] for e in expected if e[1]]
    assert request.values.tolist() == [e[2] for e in expected if e[1]]
