"""The logged selection probabilities (Moments.logged_selection): each candidate's chance
of being among the ``limit`` actions a Thompson-sampling decision answers with, at most
one per diversity group, against a readable simulation of the selection."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from models.adaptive import Moments, sigmoid


class _Fixed:
    """A normal pool that hands out the same normals every time."""

    def __init__(self, z: np.ndarray) -> None:
        self.z = z

    def take(self, rng: np.random.Generator, count: int) -> np.ndarray:
        return self.z[:count]


def _simulated(
    moments: Moments,
    rest: np.ndarray,
    groups: list[int | None],
    limit: int,
    draws: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """The selection itself, draw by draw: a Thompson draw, priority = draw × rest, the
    walk down the stable order that skips a group already taken, until ``limit``."""
    n = len(moments.mean)
    counts = np.zeros(n)
    for _ in range(draws):
        z = rng.standard_normal(n + 1)
        shift = moments.shared_mean + np.sqrt(moments.shared_variance) * z[0]
        drawn = sigmoid(moments.mean + np.sqrt(moments.variance) * z[1:] + shift)
        taken: list[int] = []
        seen: set[int] = set()
        for pos in np.argsort(-(drawn * rest), kind="stable").tolist():
            group = groups[pos]
            if group is not None and group in seen:
                continue
            if group is not None:
                seen.add(group)
            taken.append(pos)
            if len(taken) == limit:
                break
        counts[taken] += 1
    return counts / draws


def _codes(groups: list[int | None]) -> np.ndarray:
    """Groups coded as decision_log codes them: a candidate without one alone."""
    found: dict[int, int] = {}
    for g in groups:
        if g is not None:
            found.setdefault(g, len(found))
    out, alone = [], len(found)
    for g in groups:
        if g is None:
            out.append(alone)
            alone += 1
        else:
            out.append(found[g])
    return np.array(out, dtype=np.int64)


_CASES = st.integers(1, 6).flatmap(
    lambda n: st.tuples(
        st.lists(
            st.tuples(st.floats(-3, 3), st.floats(0, 2), st.floats(0.2, 5)), min_size=n, max_size=n
        ),
        st.lists(st.one_of(st.none(), st.integers(0, 2)), min_size=n, max_size=n),
    )
)


@settings(max_examples=40, deadline=None)
@given(
    case=_CASES,
    shared=st.tuples(st.floats(-1, 1), st.floats(0, 1)),
    limit=st.integers(1, 4),
    diverse=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_logged_shares_match_a_simulated_selection(
    case: tuple[list[tuple[float, float, float]], list[int | None]],
    shared: tuple[float, float],
    limit: int,
    diverse: bool,
    seed: int,
) -> None:
    """Within sampling error (five standard errors of the difference, plus the floor)."""
    beliefs, labels = case
    mean, variance, rest = (np.array(c) for c in zip(*beliefs, strict=True))
    groups: list[int | None] = labels if diverse else [None] * len(mean)
    moments = Moments(mean, variance, *shared)
    propensity = np.full(len(mean), 0.3)
    rng = np.random.default_rng(seed)
    draws = 4000
    logged = moments.logged_selection(
        rng, draws, propensity * rest, propensity, None, limit, _codes(groups) if diverse else None
    )
    simulated = _simulated(moments, rest, groups, limit, draws, rng)
    pooled = (logged + simulated) / 2
    tolerance = 5 * np.sqrt((pooled * (1 - pooled) + 1e-3) * 2 / draws) + 0.5 / draws
    assert (np.abs(logged - simulated) <= tolerance).all(), (logged, simulated)


@settings(max_examples=100, deadline=None)
@given(
    beliefs=st.lists(
        st.tuples(st.floats(-40, 40), st.floats(0, 9), st.floats(0.01, 50)), min_size=1, max_size=12
    ),
    labels=st.lists(st.one_of(st.none(), st.integers(0, 3)), min_size=12, max_size=12),
    limit=st.integers(1, 20),
    diverse=st.booleans(),
    draws=st.integers(1, 60),
    seed=st.integers(0, 2**16),
)
def test_shares_sum_to_the_limit(
    beliefs: list[tuple[float, float, float]],
    labels: list[int | None],
    limit: int,
    diverse: bool,
    draws: int,
    seed: int,
) -> None:
    """Every draw takes ``limit`` actions (as many as there are groups, if fewer): the
    counted shares (those above the floor of half a draw) sum to that exactly."""
    mean, variance, rest = (np.array(c) for c in zip(*beliefs, strict=True))
    n = len(mean)
    groups = _codes(labels[:n]) if diverse else None
    units = len(set(groups.tolist())) if groups is not None else n
    moments = Moments(mean, variance, 0.0, 0.5)
    propensity = np.full(n, 0.5)
    shares = moments.logged_selection(
        np.random.default_rng(seed), draws, propensity * rest, propensity, None, limit, groups
    )
    counted = shares[shares >= 1 / draws].sum()
    assert counted == np.float64(min(limit, units)) or abs(counted - min(limit, units)) < 1e-9
    assert (shares >= 0.5 / draws).all() and (shares <= 1.0).all()


@settings(max_examples=60, deadline=None)
@given(
    beliefs=st.lists(
        st.tuples(st.floats(-40, 40), st.floats(0, 9), st.floats(0.01, 50)), min_size=1, max_size=9
    ),
    labels=st.lists(st.integers(0, 2), min_size=9, max_size=9),
    draws=st.integers(1, 60),
    seed=st.integers(0, 2**16),
)
def test_limit_one_is_the_chance_of_ranking_first(
    beliefs: list[tuple[float, float, float]], labels: list[int], draws: int, seed: int
) -> None:
    """With one action to choose, the groups do not matter and the shares are the
    chance of coming first, from the same draws as before."""
    mean, variance, rest = (np.array(c) for c in zip(*beliefs, strict=True))
    n = len(mean)
    moments = Moments(mean, variance, 0.2, 0.3)
    z = np.random.default_rng(seed).standard_normal(draws * (n + 1))
    propensity = np.full(n, 0.25)
    first = moments.selection_probabilities(np.random.default_rng(0), draws, rest, _Fixed(z))  # type: ignore[arg-type]
    for groups in (None, _codes(list(labels[:n]))):
        logged = moments.logged_selection(
            np.random.default_rng(0),
            draws,
            propensity * rest,
            propensity,
            _Fixed(z),
            1,
            groups,  # type: ignore[arg-type]
        )
        np.testing.assert_allclose(logged, np.maximum(first, 0.5 / draws), rtol=1e-12)
