"""A decision's beliefs about its candidates' logits (:class:`Moments`): the Thompson
draw that ranks them and the Monte-Carlo estimate of each one's chance of being chosen
(coming first, or among the first few a decision answers with), which the decision log
keeps; and the pool of normals that estimate reads. Made by
:meth:`models.adaptive.AdaptiveModel.moments`."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from models.adaptive_kernels import thompson_draw
from models.selection_kernels import chosen_first, selection_shares

__all__ = ["CONTENDER_SIGMAS", "LOGIT_LIMIT", "Moments", "NormalPool", "sigmoid"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

CONTENDER_SIGMAS = 4.0  # P(a normal draw beyond 4 σ) ≈ 3e-5
LOGIT_LIMIT = 30.0  # σ(±30) keeps every probability strictly inside (0, 1)
_NO_GROUPS: IntArray = np.zeros(0, dtype=np.int64)


def sigmoid(z: FloatArray) -> FloatArray:
    """σ(z) in a new array, z clipped to ±30 first (in-place ufuncs: about 2.6 µs for 30)."""
    out = np.minimum(z, LOGIT_LIMIT)
    np.maximum(out, -LOGIT_LIMIT, out=out)
    np.negative(out, out=out)
    np.exp(out, out=out)
    out += 1.0
    np.reciprocal(out, out=out)
    return out


@dataclass(frozen=True, slots=True)
class Moments:
    """Each candidate's logit as ``N(mean, variance)``, plus one shared Gaussian term drawn
    once per decision for all candidates."""

    mean: FloatArray
    variance: FloatArray
    shared_mean: float
    shared_variance: float

    def expected(self) -> FloatArray:
        """σ of the posterior mean logit: the probability at the mean weights."""
        return sigmoid(self.mean + self.shared_mean)

    def sample(self, rng: np.random.Generator) -> FloatArray:
        """One Thompson draw: a probability per candidate, strictly inside (0, 1)."""
        out = np.empty(len(self.mean))
        thompson_draw(
            self.mean,
            self.variance,
            self.shared_mean,
            self.shared_variance,
            rng.standard_normal(len(self.mean) + 1),
            LOGIT_LIMIT,
            out,
        )
        return out

    def selection_probabilities(
        self,
        rng: np.random.Generator,
        draws: int = 200,
        weights: FloatArray | None = None,
        normals: NormalPool | None = None,
    ) -> FloatArray:
        """Monte-Carlo estimate of P(each candidate ranks first) under Thompson sampling,
        ranking by the sampled probability times ``weights`` (e.g. value × lever). Its
        standard error is ``√(p(1-p)/draws)``; a candidate rarely first may get 0.

        Only contenders are drawn: a candidate whose best case (every draw
        :data:`CONTENDER_SIGMAS` deviations up) stays below another's worst case (as many
        down) would win only through draws rarer than one in 30,000 each, so it gets 0
        without being sampled. That keeps the cost near the number of contenders rather
        than of candidates. The draws are compiled: :func:`models.selection_kernels.chosen_first`.
        """
        n = len(self.mean)
        if n == 0 or draws < 1:
            return np.zeros(n)
        count = draws * (n + 1)  # enough for every candidate; contenders use the start
        z = rng.standard_normal(count) if normals is None else normals.take(rng, count)
        counts: FloatArray = np.zeros(n)
        chosen_first(
            self.mean,
            np.sqrt(self.variance),
            self.shared_mean,
            math.sqrt(self.shared_variance),
            np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64),
            weights is not None,
            z,
            draws,
            CONTENDER_SIGMAS,
            LOGIT_LIMIT,
            counts,
        )
        counts /= draws
        return counts

    def logged_selection(
        self,
        rng: np.random.Generator,
        draws: int,
        priority: FloatArray,
        propensity: FloatArray,
        normals: NormalPool | None,
        limit: int = 1,
        groups: IntArray | None = None,
    ) -> FloatArray:
        """Each candidate's probability of being among the ``limit`` actions the decision
        answers with, as the decision log needs it: ranked by the sampled probability
        times ``priority / propensity`` (the rest of a candidate's priority), at most one
        per value of ``groups`` (the diversity attribute coded ``0 … n-1``, a candidate
        without a value in a group of its own; None: no diversity), and at least
        ``0.5 / draws`` (a candidate is never logged as impossible), in one compiled call.

        With ``limit`` 1 it is :meth:`selection_probabilities` (the chance of ranking
        first), at the same cost. Above, the shares sum to ``limit`` (to the number of
        groups, if fewer) but for the floor; contact caps that refuse a reservation while
        the selection walks the order are not drawn: the shares are those of a selection
        where every cap has room."""
        n = len(self.mean)
        shares = np.zeros(n)
        if n == 0 or draws < 1:
            return shares
        count = draws * (n + 1)
        z = rng.standard_normal(count) if normals is None else normals.take(rng, count)
        selection_shares(
            self.mean,
            self.variance,
            self.shared_mean,
            self.shared_variance,
            priority,
            propensity,
            True,
            _NO_GROUPS if groups is None else groups,
            limit,
            z,
            draws,
            CONTENDER_SIGMAS,
            LOGIT_LIMIT,
            0.5 / draws,
            shares,
        )
        return shares


class NormalPool:
    """Standard normal draws made ahead, for the logged selection probabilities.

    Drawing 100 × 100 normals costs about 80 µs here, more than the rest of the
    estimate; reading them from a pool at a random place costs about 2. Each estimate
    still uses independent draws, and the pool is renewed a little at every use, so
    estimates of different decisions share no fixed noise. Not for the Thompson draw
    that decides: that one is always fresh.
    """

    def __init__(self, rng: np.random.Generator, size: int = 1 << 18, renew: int = 256) -> None:
        self.values = rng.standard_normal(size)
        self.renew = renew
        self._next = 0

    def take(self, rng: np.random.Generator, count: int) -> FloatArray:
        size = len(self.values)
        if count > size // 4:
            return rng.standard_normal(count)
        start = int(rng.random() * (size - count))  # a quarter of rng.integers' cost
        at = self._next
        self.values[at : at + self.renew] = rng.standard_normal(self.renew)
        self._next = (at + self.renew) % size
        return self.values[start : start + count]
