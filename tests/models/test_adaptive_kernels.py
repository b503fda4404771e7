"""The adaptive model's compiled kernels (models.adaptive_kernels): ready before work,
and the same beliefs as the readable design."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from models import adaptive_kernels
from models.adaptive import AdaptiveModel
from models.adaptive_state import Delta


def test_warm_up_leaves_each_kernel_compiled_once() -> None:
    adaptive_kernels.warm_up()
    assert len(adaptive_kernels.design_rows.signatures) == 1
    assert len(adaptive_kernels.laplace_steps.signatures) == 1


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
