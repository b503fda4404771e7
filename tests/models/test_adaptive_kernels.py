"""The adaptive model's compiled kernels (models.adaptive_kernels): ready before work,
the same beliefs as the readable design, and the same selection counts as the array
version they replaced."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from models import adaptive_kernels, selection_kernels
from models.adaptive import CONTENDER_SIGMAS, AdaptiveModel, Moments, sigmoid
from models.adaptive_state import Delta


def test_warm_up_leaves_each_kernel_compiled_once() -> None:
    adaptive_kernels.warm_up()
    assert len(adaptive_kernels.design_rows.signatures) == 1
    assert len(adaptive_kernels.laplace_steps.signatures) == 1
    assert len(selection_kernels.chosen_first.signatures) == 1
    assert len(adaptive_kernels.candidate_moments.signatures) == 1


_WORDS = st.sampled_from(["shoes", "bags", "gold", "x", ""])
_SCALARS = st.one_of(_WORDS, st.integers(-50, 50), st.floats(-1e3, 1e3), st.booleans())
_VIEWS = st.lists(
    st.fixed_dictionaries(
        {"id": st.sampled_from(["a", "b", "c", "d"])},
        optional={"category": _WORDS, "band": _WORDS, "value": st.integers(0, 90)},
    ),
    min_size=1,
    max_size=5,
)


@settings(max_examples=80, deadline=None)
@given(
    customer=st.dictionaries(st.sampled_from(["segment", "fav", "orders", "vip"]), _SCALARS),
    context=st.dictionaries(st.sampled_from(["page_category", "device", "hour"]), _SCALARS),
    views=_VIEWS,
    seed=st.integers(0, 2**16),
)
def test_candidate_moments_are_the_designs_block_sums(
    customer: dict[str, Any], context: dict[str, Any], views: list[dict[str, Any]], seed: int
) -> None:
    """The compiled beliefs against the readable reference: Hasher.design, then the
    table's cells summed per block and weighted by the block values."""
    model = AdaptiveModel(dims=2**6, seed=0)
    rng = np.random.default_rng(seed)
    model.apply_delta(
        Delta(np.arange(model.dims), rng.normal(size=model.dims), rng.random(model.dims))
    )
    table = model.bind(views)
    rows = rng.permutation(len(views))[: max(1, len(views) - 1)]
    moments = model.moments(customer, context, table, rows)

    design = model.hasher.design(model.hasher.request(customer, context), table, rows)
    z = model._z  # the reference reads the same table
    sums = np.add.reduceat(z[design.index], design.starts, axis=1)
    mean = np.einsum("nb,nb->n", sums.real, design.scales) + table.offsets[rows]
    variance = np.einsum("nb,nb->n", sums.imag, design.scales**2)
    np.testing.assert_allclose(moments.mean, mean, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(moments.variance, variance, rtol=1e-12, atol=1e-12)


def _first_shares(moments: Moments, z: np.ndarray, draws: int, weights: Any) -> np.ndarray:
    """The array version the kernel replaced: contenders, then ``z`` as (draws, m + 1)."""
    sd = np.sqrt(moments.variance)
    reach = CONTENDER_SIGMAS * sd
    if weights is None:
        contenders = np.flatnonzero(moments.mean + reach >= (moments.mean - reach).max())
    else:
        shared = CONTENDER_SIGMAS * np.sqrt(moments.shared_variance)
        best = sigmoid(moments.mean + reach + (moments.shared_mean + shared)) * weights
        worst = sigmoid(moments.mean - reach + (moments.shared_mean - shared)) * weights
        contenders = np.flatnonzero(best >= worst.max())
    m = len(contenders)
    counts = np.zeros(len(moments.mean))
    if m == 1:
        counts[contenders] = 1.0
        return counts
    draws_z = z[: draws * (m + 1)].reshape(draws, m + 1)
    logits = sd[contenders] * draws_z[:, 1:]
    logits += moments.mean[contenders]
    if weights is None:
        first = logits.argmax(axis=1)
    else:
        logits += moments.shared_mean + np.sqrt(moments.shared_variance) * draws_z[:, :1]
        first = (sigmoid(logits) * weights[contenders]).argmax(axis=1)
    counts[contenders] = np.bincount(first, minlength=m) / draws
    return counts


class _Fixed:
    """A normal pool that hands out the same draws to both versions."""

    def __init__(self, z: np.ndarray) -> None:
        self.z = z

    def take(self, rng: np.random.Generator, count: int) -> np.ndarray:
        return self.z[:count]


_LOGITS = st.floats(-40, 40)


@settings(max_examples=150, deadline=None)
@given(
    beliefs=st.lists(
        st.tuples(_LOGITS, st.floats(0, 9), st.floats(0.01, 50)), min_size=1, max_size=9
    ),
    shared=st.tuples(_LOGITS, st.floats(0, 4)),
    weighted=st.booleans(),
    draws=st.integers(1, 60),
    seed=st.integers(0, 2**16),
)
def test_chosen_first_counts_as_the_array_version(
    beliefs: list[tuple[float, float, float]],
    shared: tuple[float, float],
    weighted: bool,
    draws: int,
    seed: int,
) -> None:
    """Same draws, same winners: every candidate's share equal to the last bit, ties
    (equal candidates) going to the first, hopeless candidates at 0, logits past ±30
    clipped alike."""
    mean, variance, weights = (np.array(column) for column in zip(*beliefs, strict=True))
    moments = Moments(mean, variance, *shared)
    z = np.random.default_rng(seed).standard_normal(draws * (len(mean) + 1))
    used = weights if weighted else None
    compiled = moments.selection_probabilities(np.random.default_rng(0), draws, used, _Fixed(z))
    np.testing.assert_array_equal(compiled, _first_shares(moments, z, draws, used))


@settings(max_examples=150, deadline=None)
@given(
    beliefs=st.lists(st.tuples(_LOGITS, st.floats(0, 9)), min_size=0, max_size=12),
    shared=st.tuples(_LOGITS, st.floats(0, 4)),
    seed=st.integers(0, 2**16),
)
def test_thompson_draw_is_the_array_formula(
    beliefs: list[tuple[float, float]], shared: tuple[float, float], seed: int
) -> None:
    """σ(mean + √variance z + shared term), logits past ±30 clipped, from the same normals."""
    mean = np.array([m for m, _ in beliefs], dtype=np.float64)
    variance = np.array([v for _, v in beliefs], dtype=np.float64)
    moments = Moments(mean, variance, *shared)
    z = np.random.default_rng(seed).standard_normal(len(mean) + 1)
    logits = np.sqrt(variance) * z[1:] + mean + (shared[0] + np.sqrt(shared[1]) * z[0])
    drawn = moments.sample(np.random.default_rng(seed))
    np.testing.assert_allclose(drawn, sigmoid(logits), rtol=1e-12, atol=1e-300)
    assert ((drawn > 0) & (drawn < 1)).all()


@settings(max_examples=150, deadline=None)
@given(p=st.lists(st.floats(0, 1), min_size=0, max_size=20))
def test_compiled_logits_are_the_array_logits(p: list[float]) -> None:
    from models.blended import _logits
    from models.hashing import logit

    probabilities = np.array(p, dtype=np.float64)
    np.testing.assert_allclose(_logits(probabilities), logit(probabilities), rtol=1e-12)


@settings(max_examples=150, deadline=None)
@given(
    beliefs=st.lists(
        st.tuples(_LOGITS, st.floats(0, 9), st.floats(0, 1), st.floats(0, 50)),
        min_size=1,
        max_size=9,
    ),
    shared=st.tuples(_LOGITS, st.floats(0, 4)),
    draws=st.integers(1, 60),
    seed=st.integers(0, 2**16),
)
def test_logged_selection_is_the_weighted_estimate_floored(
    beliefs: list[tuple[float, float, float, float]],
    shared: tuple[float, float],
    draws: int,
    seed: int,
) -> None:
    """Ranked by the draw times priority / propensity (a zero propensity counting as
    1e-12), each share at least half a draw's worth: the same draws give the same shares
    as the readable composition."""
    mean, variance, propensity, rest = (np.array(c) for c in zip(*beliefs, strict=True))
    priority = propensity * rest
    moments = Moments(mean, variance, *shared)
    z = np.random.default_rng(seed).standard_normal(draws * (len(mean) + 1))
    weights = priority / np.maximum(propensity, 1e-12)
    expected = np.clip(_first_shares(moments, z, draws, weights), 0.5 / draws, 1.0)
    logged = moments.logged_selection(
        np.random.default_rng(0),
        draws,
        priority,
        propensity,
        _Fixed(z),  # type: ignore[arg-type]
    )
    np.testing.assert_allclose(logged, expected, rtol=1e-12)
