"""Interval maths for the uplift report: pure functions over counts and sums, no arrays.

Every function takes the two groups' sufficient statistics and returns an :class:`Interval`
(estimate, low, high) or ``None`` where the quantity is undefined for the data.

- :func:`wilson_interval`: the score interval for one proportion (Wilson 1927; Newcombe 1998a,
  method 3, no continuity correction).
- :func:`newcombe_difference`: the hybrid score interval for a difference of two independent
  proportions, built from the two Wilson intervals (Newcombe 1998b, method 10). It stays inside
  [-1, 1], keeps its coverage near the nominal level for small counts and rates near 0 (a few
  percent response is the normal case here), and is defined for zero responders.
- :func:`katz_ratio`: the ratio of two proportions on the log scale (Katz et al. 1978).
  Undefined, and so ``None``, when either group has no responders: the log ratio is then
  infinite or 0/0, and a continuity correction would invent an effect the data do not show.
- :func:`welch_difference`: a difference of two means from (n, sum, sum of squares), with the
  unpooled (Welch) standard error and a normal quantile. The report keeps only these three
  numbers per group, and they identify nothing of a value's distribution beyond its first two
  moments, so a parametric bootstrap would have to assume a shape it cannot check and would add
  seeded noise to a report read over the API; with the thousands of decisions an arm needs
  before anyone reads its uplift, the central limit theorem makes the normal interval accurate.

References: E. B. Wilson, JASA 22 (1927) 209-212. R. G. Newcombe, Stat Med 17 (1998) 857-872
(one proportion) and 873-890 (difference, Table II). D. Katz, J. Baptista, S. P. Azen,
M. C. Pike, Biometrics 34 (1978) 469-474.

>>> wilson_interval(81, 263).rounded(4)
Interval(estimate=0.308, low=0.2553, high=0.3662)
>>> newcombe_difference(56, 70, 48, 80).rounded(4)
Interval(estimate=0.2, low=0.0524, high=0.3339)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

Z_95 = NormalDist().inv_cdf(0.975)  # 1.959964...

__all__ = [
    "Z_95",
    "Interval",
    "katz_ratio",
    "newcombe_difference",
    "verdict",
    "welch_difference",
    "wilson_interval",
    "z_value",
]


@dataclass(frozen=True, slots=True)
class Interval:
    """A point estimate with its two-sided confidence limits, ``low <= estimate <= high``."""

    estimate: float
    low: float
    high: float

    def excludes(self, value: float = 0.0) -> bool:
        return value < self.low or value > self.high

    def shifted(self, by: float) -> Interval:
        return Interval(self.estimate + by, self.low + by, self.high + by)

    def rounded(self, digits: int) -> Interval:
        """The same interval rounded for display (``+ 0.0`` turns ``-0.0`` into ``0.0``)."""
        return Interval(
            round(self.estimate, digits) + 0.0,
            round(self.low, digits) + 0.0,
            round(self.high, digits) + 0.0,
        )


def z_value(confidence: float = 0.95) -> float:
    """The two-sided standard normal quantile for a confidence level.

    >>> round(z_value(0.95), 6)
    1.959964
    >>> z_value(1.0)
    Traceback (most recent call last):
    ...
    ValueError: confidence must be in (0, 1), got 1.0
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def _check_count(successes: int, trials: int) -> None:
    if trials < 0 or successes < 0:
        raise ValueError(f"counts must be >= 0, got {successes}/{trials}")
    if successes > trials:
        raise ValueError(f"successes exceed trials: {successes}/{trials}")


def wilson_interval(successes: int, trials: int, z: float = Z_95) -> Interval:
    """Wilson score interval for ``successes / trials``, no continuity correction.

    Newcombe (1998a), Table I, method 3:

    >>> wilson_interval(15, 148).rounded(4)
    Interval(estimate=0.1014, low=0.0624, high=0.1605)
    >>> wilson_interval(0, 20).rounded(4)
    Interval(estimate=0.0, low=0.0, high=0.1611)
    >>> wilson_interval(1, 29).rounded(4)
    Interval(estimate=0.0345, low=0.0061, high=0.1718)
    >>> wilson_interval(0, 0)
    Traceback (most recent call last):
    ...
    ValueError: a proportion needs at least one trial
    """
    _check_count(successes, trials)
    if trials == 0:
        raise ValueError("a proportion needs at least one trial")
    n = float(trials)
    p = successes / n
    z2 = z * z
    centre = (2.0 * successes + z2) / (2.0 * (n + z2))
    half = z * math.sqrt(z2 + 4.0 * successes * (1.0 - p)) / (2.0 * (n + z2))
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return Interval(p, min(low, p), max(high, p))


def newcombe_difference(
    successes_1: int, trials_1: int, successes_2: int, trials_2: int, z: float = Z_95
) -> Interval:
    """Hybrid score interval for ``p1 - p2`` (Newcombe 1998b, method 10).

    With Wilson limits ``(l1, u1)`` and ``(l2, u2)``, the limits are
    ``d - sqrt((p1 - l1)**2 + (u2 - p2)**2)`` and ``d + sqrt((u1 - p1)**2 + (p2 - l2)**2)``.
    Worked examples of Newcombe (1998b), Table II:

    >>> newcombe_difference(9, 10, 3, 10).rounded(4)
    Interval(estimate=0.6, low=0.1705, high=0.809)
    >>> newcombe_difference(5, 56, 0, 29).rounded(4)
    Interval(estimate=0.0893, low=-0.0381, high=0.1926)
    >>> newcombe_difference(0, 10, 0, 20).rounded(4)
    Interval(estimate=0.0, low=-0.1611, high=0.2775)
    >>> newcombe_difference(10, 10, 0, 20).rounded(4)
    Interval(estimate=1.0, low=0.6791, high=1.0)
    """
    one = wilson_interval(successes_1, trials_1, z)
    two = wilson_interval(successes_2, trials_2, z)
    p1, p2 = one.estimate, two.estimate
    d = p1 - p2
    below = math.hypot(p1 - one.low, two.high - p2)
    above = math.hypot(one.high - p1, p2 - two.low)
    return Interval(d, max(-1.0, d - below), min(1.0, d + above))


def katz_ratio(
    successes_1: int, trials_1: int, successes_2: int, trials_2: int, z: float = Z_95
) -> Interval | None:
    """Katz log interval for the ratio ``p1 / p2``; ``None`` when either count is zero.

    ``exp(log(r) +- z * sqrt(1/x1 - 1/n1 + 1/x2 - 1/n2))``. 27 of 122 exposed against 44 of 487
    unexposed (the same limits as ``scipy.stats.contingency.relative_risk``, which uses Katz):

    >>> katz_ratio(27, 122, 44, 487).rounded(4)
    Interval(estimate=2.4495, low=1.5837, high=3.7887)
    >>> katz_ratio(0, 100, 4, 100) is None
    True
    """
    _check_count(successes_1, trials_1)
    _check_count(successes_2, trials_2)
    if successes_1 == 0 or successes_2 == 0:
        return None
    ratio = (successes_1 / trials_1) / (successes_2 / trials_2)
    se = math.sqrt(1 / successes_1 - 1 / trials_1 + 1 / successes_2 - 1 / trials_2)
    log_ratio = math.log(ratio)
    return Interval(ratio, math.exp(log_ratio - z * se), math.exp(log_ratio + z * se))


def _mean_variance(n: int, total: float, total_sq: float) -> tuple[float, float]:
    """Mean and unbiased variance from (n, sum, sum of squares), checked for consistency."""
    if not (math.isfinite(total) and math.isfinite(total_sq)):
        raise ValueError(f"sums must be finite, got {total!r} and {total_sq!r}")
    if total_sq < 0.0:
        raise ValueError(f"a sum of squares cannot be negative, got {total_sq!r}")
    mean = total / n
    centred = total_sq - total * mean  # sum of (x - mean)^2, up to rounding
    if centred < -1e-9 * max(1.0, total_sq):
        raise ValueError(
            f"sum of squares {total_sq!r} is below sum^2/n = {total * mean!r}: inconsistent sums"
        )
    return mean, max(0.0, centred) / (n - 1)


def welch_difference(
    n_1: int,
    sum_1: float,
    sum_sq_1: float,
    n_2: int,
    sum_2: float,
    sum_sq_2: float,
    z: float = Z_95,
) -> Interval | None:
    """Normal interval for ``mean1 - mean2`` with the unpooled (Welch) standard error.

    ``None`` when a group has fewer than two observations (no variance estimate). Samples
    [1, 2, 3, 4] and [0, 0, 1, 1]: means 2.5 and 0.5, variances 5/3 and 1/3, so the standard
    error is sqrt(5/12 + 1/12) = sqrt(1/2):

    >>> welch_difference(4, 10.0, 30.0, 4, 2.0, 2.0).rounded(4)
    Interval(estimate=2.0, low=0.6141, high=3.3859)
    >>> welch_difference(1, 5.0, 25.0, 4, 2.0, 2.0) is None
    True
    """
    if n_1 < 0 or n_2 < 0:
        raise ValueError(f"counts must be >= 0, got {n_1} and {n_2}")
    if n_1 < 2 or n_2 < 2:
        return None
    mean_1, var_1 = _mean_variance(n_1, sum_1, sum_sq_1)
    mean_2, var_2 = _mean_variance(n_2, sum_2, sum_sq_2)
    d = mean_1 - mean_2
    se = math.sqrt(var_1 / n_1 + var_2 / n_2)
    return Interval(d, d - z * se, d + z * se)


def verdict(interval: Interval | None) -> str | None:
    """``"winner"`` when the interval lies above zero, ``"loser"`` below, else ``None``.

    >>> verdict(Interval(0.02, 0.01, 0.03)), verdict(Interval(0.0, -0.01, 0.01)), verdict(None)
    ('winner', None, None)
    """
    if interval is None or not interval.excludes(0.0):
        return None
    return "winner" if interval.low > 0.0 else "loser"
