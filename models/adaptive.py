"""The adaptive model: Bayesian logistic regression over hashed features, learned online.

Each bucket ``i`` of a ``dims``-sized table (see :mod:`models.hashing`) holds a Gaussian belief
about its weight, mean ``m[i]`` and precision ``q[i]`` (diagonal posterior). A response is one
Laplace step (Chapelle & Li 2011, "An Empirical Evaluation of Thompson Sampling", Algorithm 3,
with one observation per step): with ``x`` the row, ``o`` the offset and ``r`` the reward in
[0, 1], the posterior mode ``w = m + c x / q`` solves ``c = r - σ(o + m·x + c Σ x²/q)`` (one
scalar equation, Newton); then ``m ← w`` and ``q ← q + x² p (1 - p)`` with ``p = σ(o + w·x)``.
No retraining, no batch: a response moves the next decision.

The prior is ``N(0, 1/prior_precision)`` on every weight plus a fixed *offset* per candidate:
the logit of the action's ``prior`` (a new action starts at its prior propensity), or the logit
of the base model's probability when :class:`BlendedScorer` has one, so the weights learn a
correction. A state learned with one offset belongs to it: start a fresh state for a new base
model version.

Thompson sampling draws each candidate's logit from its Gaussian marginal
``N(o + Σ m x, Σ x²/q)``. The blocks every candidate shares (global bias, customer and context
tokens) are drawn once per decision, as a joint draw would: their uncertainty moves every
candidate together and does not reshuffle the ranking. The candidate blocks are drawn
independently per candidate (exact for ``action.id`` blocks, an approximation where two
candidates share an attribute bucket).

Sharing: ``to_bytes``/``from_bytes`` (the touched buckets: 20 bytes each) and :class:`Delta`
``(indices, dm, dq)``, additive, from :meth:`AdaptiveModel.update_batch`. Deltas of different
workers commute, so readers just add them in any order.

>>> model = AdaptiveModel(dims=2**12, seed=1)
>>> actions = model.bind([{"id": "shoes-sale", "category": "shoes", "prior": 0.05},
...                       {"id": "bag-sale", "category": "bags", "prior": 0.05}])
>>> shoe_fan = {"favourite": "shoes"}
>>> model.mean(shoe_fan, {}, actions).round(3).tolist()  # at the prior
[0.05, 0.05]
>>> for _ in range(20):
...     model.update(shoe_fan, {}, {"id": "shoes-sale", "category": "shoes", "prior": 0.05}, 1.0)
...     model.update(shoe_fan, {}, {"id": "bag-sale", "category": "bags", "prior": 0.05}, 0.0)
>>> model.mean(shoe_fan, {}, actions).round(2).tolist()
[0.99, 0.0]
>>> model.sample(shoe_fan, {}, actions, np.random.default_rng(0)).shape
(2,)
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import numpy as np
import numpy.typing as npt

from models.hashing import ActionTable, Hasher, logit

__all__ = ["AdaptiveModel", "BlendedScorer", "Delta", "Moments", "Observation"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

LOGIT_LIMIT = 30.0  # σ(±30) keeps every probability strictly inside (0, 1)
_STATE = struct.Struct("<4sHBxdQQ")  # magic, format, bits, prior precision, updates, buckets
_DELTA = struct.Struct("<4sHxxQQ")  # magic, format, updates, buckets


def _sigmoid(z: FloatArray) -> FloatArray:
    out: FloatArray = 1.0 / (1.0 + np.exp(-np.clip(z, -LOGIT_LIMIT, LOGIT_LIMIT)))
    return out


def _sigma(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


class Observation(NamedTuple):
    """One response; ``offset`` is the logit the decision used (None: the action's prior)."""

    customer: Mapping[str, Any]
    context: Mapping[str, Any]
    action: Mapping[str, Any]
    reward: float
    offset: float | None = None


@dataclass(frozen=True, slots=True)
class Delta:
    """A sparse change of the parameters: ``m[indices] += dm``, ``q[indices] += dq``."""

    indices: IntArray
    dm: FloatArray
    dq: FloatArray
    updates: int = 0

    def __len__(self) -> int:
        return len(self.indices)

    @classmethod
    def combine(cls, deltas: Iterable[Delta]) -> Delta:
        """One delta with the effect of all (summed per bucket)."""
        parts = list(deltas)
        if not parts:
            return cls(np.zeros(0, np.int64), np.zeros(0), np.zeros(0))
        index, inverse = np.unique(np.concatenate([d.indices for d in parts]), return_inverse=True)
        dm = np.bincount(inverse, np.concatenate([d.dm for d in parts]), len(index))
        dq = np.bincount(inverse, np.concatenate([d.dq for d in parts]), len(index))
        return cls(index.astype(np.int64), dm, dq, sum(d.updates for d in parts))

    def to_bytes(self) -> bytes:
        head = _DELTA.pack(b"NBAD", 1, self.updates, len(self))
        return head + _arrays(self.indices, self.dm, self.dq)

    @classmethod
    def from_bytes(cls, data: bytes) -> Delta:
        magic, version, updates, count = _header(_DELTA, data, b"NBAD")
        index, dm, dq = _unpack_arrays(data, _DELTA.size, count)
        return cls(index, dm, dq, updates)


@dataclass(frozen=True, slots=True)
class Moments:
    """Each candidate's logit as a Gaussian ``N(mean, variance)``, plus one shared Gaussian
    term that is drawn once per decision for all candidates."""

    mean: FloatArray
    variance: FloatArray
    shared_mean: float
    shared_variance: float

    def expected(self) -> FloatArray:
        """σ of the posterior mean logit: the probability at the mean weights."""
        return _sigmoid(self.mean + self.shared_mean)

    def sample(self, rng: np.random.Generator) -> FloatArray:
        """One Thompson draw: a probability per candidate, strictly inside (0, 1)."""
        z = rng.standard_normal(len(self.mean) + 1)
        shared = self.shared_mean + math.sqrt(self.shared_variance) * z[0]
        return _sigmoid(self.mean + np.sqrt(self.variance) * z[1:] + shared)

    def selection_probabilities(
        self, rng: np.random.Generator, draws: int = 200, weights: FloatArray | None = None
    ) -> FloatArray:
        """Monte-Carlo estimate of P(candidate is first) under Thompson sampling, ranking by
        the sampled probability times ``weights`` (e.g. value × lever). Standard error
        ``√(p(1-p)/draws)``; an estimate may be 0 for a candidate that was rarely first."""
        n = len(self.mean)
        if n == 0:
            return np.zeros(0)
        z = rng.standard_normal((draws, n + 1))
        logits = self.mean + np.sqrt(self.variance) * z[:, 1:]
        if weights is None:  # σ is monotone and the shared draw moves all alike
            first = logits.argmax(axis=1)
        else:
            logits += self.shared_mean + math.sqrt(self.shared_variance) * z[:, :1]
            first = (_sigmoid(logits) * weights).argmax(axis=1)
        counts: FloatArray = np.bincount(first, minlength=n) / draws
        return counts


class AdaptiveModel:
    """Online Bayesian logistic regression with Thompson sampling, over hashed features."""

    def __init__(self, dims: int = 2**18, prior_precision: float = 1.0, seed: int | None = None):
        if dims < 16 or dims & (dims - 1):
            raise ValueError(f"dims must be a power of two ≥ 16, got {dims}")
        if not prior_precision > 0 or not math.isfinite(prior_precision):
            raise ValueError(f"prior_precision must be positive, got {prior_precision}")
        self.dims = dims
        self.prior_precision = prior_precision
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.hasher = Hasher(dims.bit_length() - 1)
        self.updates = 0
        # mean + 1j * variance per bucket: one gather fetches both. The upper half is the
        # null half (padding, matches that missed): zero and never written.
        self._z = np.zeros(2 * dims, dtype=np.complex128)
        self._z.imag[:dims] = 1.0 / prior_precision
        self._q = np.full(dims, prior_precision)  # precisions: the authoritative values
        self._actions: dict[str, tuple[Mapping[str, Any], ActionTable]] = {}

    # ---- parameters -------------------------------------------------------------------
    @property
    def m(self) -> FloatArray:
        """Posterior means (read-only view)."""
        view = self._z.real[: self.dims]
        view.flags.writeable = False
        return view

    @property
    def q(self) -> FloatArray:
        """Posterior precisions (read-only view)."""
        view = self._q[:]
        view.flags.writeable = False
        return view

    def _touched(self) -> IntArray:
        m, q = self._z.real[: self.dims], self._q
        return np.flatnonzero((m != 0) | (q != self.prior_precision)).astype(np.int64)

    @property
    def state(self) -> Delta:
        """Everything learned, as a delta from the prior: ``AdaptiveModel(...).apply_delta``
        of it reproduces this model (up to rounding of ``q``)."""
        index = self._touched()
        dq = self._q[index] - self.prior_precision
        return Delta(index, self._z.real[index], dq, self.updates)

    def apply_delta(self, delta: Delta) -> None:
        """Add a delta (from :meth:`update_batch`, any worker, in any order)."""
        index = delta.indices
        if len(index) and (index.min() < 0 or index.max() >= self.dims):
            raise ValueError("delta has buckets outside this model's table")
        mean = self._z.real
        np.add.at(mean, index, delta.dm)
        np.add.at(self._q, index, delta.dq)
        self._z.imag[index] = 1.0 / self._q[index]
        self.updates += delta.updates

    def to_bytes(self) -> bytes:
        """The touched buckets: header, uint32 indices, float64 means and precisions."""
        index = self._touched()
        head = _STATE.pack(
            b"NBAM", 1, self.hasher.bits, self.prior_precision, self.updates, len(index)
        )
        return head + _arrays(index, self._z.real[index], self._q[index])

    @classmethod
    def from_bytes(cls, data: bytes, seed: int | None = None) -> AdaptiveModel:
        _, _, bits, precision, updates, count = _header(_STATE, data, b"NBAM")
        model = cls(1 << bits, precision, seed)
        index, m, q = _unpack_arrays(data, _STATE.size, count)
        if len(index) and index.max() >= model.dims:
            raise ValueError("state has buckets outside its table")
        model._z.real[index] = m
        model._q[index] = q
        model._z.imag[index] = 1.0 / q
        model.updates = updates
        return model

    # ---- features ---------------------------------------------------------------------
    def bind(
        self, action_views: Sequence[Mapping[str, Any]], priors: Sequence[float] | None = None
    ) -> ActionTable:
        """Hash a catalogue's actions once (at load); pass the table to sample/mean."""
        return self.hasher.table(action_views, priors)

    def _action(self, view: Mapping[str, Any]) -> ActionTable:
        key = str(view.get("id"))
        found = self._actions.get(key)
        if found is None or found[0] != view:
            if len(self._actions) > 10_000:
                self._actions.clear()
            found = (dict(view), self.hasher.table([view]))
            self._actions[key] = found
        return found[1]

    def features(
        self, customer: Mapping[str, Any], context: Mapping[str, Any], action_view: Mapping[str, Any]
    ) -> tuple[IntArray, FloatArray]:
        """The buckets of one candidate's row and their values (x), summed where two
        features share a bucket; the shared blocks included."""
        request = self.hasher.request(customer, context)
        design = self.hasher.design(request, self._action(action_view))
        sizes = np.diff([*design.starts, design.index.shape[1]])
        index, inverse = np.unique(
            np.concatenate([design.shared, design.index[0]]), return_inverse=True
        )
        cells = np.concatenate([design.shared_values, np.repeat(design.scales[0], sizes)])
        x = np.bincount(inverse, cells, len(index))
        keep = (index < self.dims) & (x != 0)
        return index[keep].astype(np.int64), x[keep]

    def moments(
        self,
        customer: Mapping[str, Any],
        context: Mapping[str, Any],
        actions: ActionTable | Sequence[Mapping[str, Any]],
        rows: IntArray | Sequence[int] | None = None,
        offsets: FloatArray | None = None,
    ) -> Moments:
        """Each candidate's logit belief. ``actions``: a bound table (fast) or views;
        ``rows``: the candidates' rows of the table (default all); ``offsets``: logits
        replacing the actions' priors (a base model's)."""
        table = actions if isinstance(actions, ActionTable) else self.bind(actions)
        picked = None if rows is None else np.asarray(rows, dtype=np.intp)
        design = self.hasher.design(self.hasher.request(customer, context), table, picked)
        z = self._z
        sums = np.add.reduceat(z[design.index], design.starts, axis=1)
        scales = design.scales
        mean = np.einsum("nb,nb->n", sums.real, scales)
        if offsets is not None:
            mean += offsets
        else:
            mean += table.offsets if picked is None else table.offsets[picked]
        variance = np.einsum("nb,nb->n", sums.imag, scales * scales)
        shared = z[design.shared]
        values = design.shared_values
        return Moments(
            mean, variance, float(shared.real @ values), float(shared.imag @ (values * values))
        )

    def sample(
        self,
        customer: Mapping[str, Any],
        context: Mapping[str, Any],
        action_views: ActionTable | Sequence[Mapping[str, Any]],
        rng: np.random.Generator | None = None,
        rows: IntArray | Sequence[int] | None = None,
        offsets: FloatArray | None = None,
    ) -> FloatArray:
        """A Thompson draw of every candidate's click probability."""
        moments = self.moments(customer, context, action_views, rows, offsets)
        return moments.sample(self.rng if rng is None else rng)

    def mean(
        self,
        customer: Mapping[str, Any],
        context: Mapping[str, Any],
        action_views: ActionTable | Sequence[Mapping[str, Any]],
        rows: IntArray | Sequence[int] | None = None,
        offsets: FloatArray | None = None,
    ) -> FloatArray:
        """σ(posterior mean logit) per candidate (explanations, logging)."""
        return self.moments(customer, context, action_views, rows, offsets).expected()

    # ---- learning ---------------------------------------------------------------------
    def update(
        self,
        customer: Mapping[str, Any],
        context: Mapping[str, Any],
        action_view: Mapping[str, Any],
        reward: float,
        offset: float | None = None,
    ) -> None:
        """One Laplace step on one response (reward in [0, 1]; 1 = clicked)."""
        index, x = self.features(customer, context, action_view)
        if offset is None:
            offset = float(self._action(action_view).offsets[0])
        self._step(index, x, reward, offset)

    def update_batch(self, observations: Iterable[Observation]) -> Delta:
        """Sequential updates of a batch; returns the change, for other processes."""
        batch = [
            (obs, *self.features(obs.customer, obs.context, obs.action)) for obs in observations
        ]
        if not batch:
            return Delta(np.zeros(0, np.int64), np.zeros(0), np.zeros(0))
        touched = np.unique(np.concatenate([index for _, index, _ in batch]))
        old_m, old_q = self._z.real[touched], self._q[touched]
        for obs, index, x in batch:
            offset = obs.offset
            if offset is None:
                offset = float(self._action(obs.action).offsets[0])
            self._step(index, x, obs.reward, offset)
        dm = self._z.real[touched] - old_m
        return Delta(touched, dm, self._q[touched] - old_q, len(batch))

    def _step(self, index: IntArray, x: FloatArray, reward: float, offset: float) -> None:
        if not 0.0 <= reward <= 1.0:
            raise ValueError(f"reward must be in [0, 1], got {reward}")
        if not math.isfinite(offset):
            raise ValueError(f"offset must be finite, got {offset}")
        m, q = self._z.real[index], self._q[index]
        score = offset + float(m @ x)
        spread = float((x * x) @ (1.0 / q))
        c = _solve(score, spread, reward)
        p = _sigma(score + c * spread)
        q_new = q + x * x * (p * (1.0 - p))
        self._z[index] = (m + c * x / q) + 1j / q_new
        self._q[index] = q_new
        self.updates += 1


def _solve(score: float, spread: float, reward: float) -> float:
    """The root of ``c - r + σ(s + c v)``, increasing in c, inside [r - 1, r]: Newton kept
    in a shrinking bracket."""
    lo, hi = reward - 1.0, reward
    c = reward - _sigma(score)
    for _ in range(50):
        p = _sigma(score + c * spread)
        g = c - reward + p
        if g > 0:
            hi = c
        else:
            lo = c
        step = g / (1.0 + spread * p * (1.0 - p))
        nxt = c - step
        if not lo <= nxt <= hi:
            nxt = 0.5 * (lo + hi)
        if abs(nxt - c) < 1e-13:
            return nxt
        c = nxt
    return c


def _arrays(index: IntArray, a: FloatArray, b: FloatArray) -> bytes:
    return index.astype("<u4").tobytes() + a.astype("<f8").tobytes() + b.astype("<f8").tobytes()


def _unpack_arrays(data: bytes, start: int, count: int) -> tuple[IntArray, FloatArray, FloatArray]:
    if len(data) != start + 20 * count:
        raise ValueError(f"expected {start + 20 * count} bytes, got {len(data)}")
    index = np.frombuffer(data, "<u4", count, start).astype(np.int64)
    a = np.frombuffer(data, "<f8", count, start + 4 * count).astype(np.float64)
    b = np.frombuffer(data, "<f8", count, start + 12 * count).astype(np.float64)
    return index, a, b


def _header(layout: struct.Struct, data: bytes, magic: bytes) -> tuple[Any, ...]:
    if len(data) < layout.size or data[:4] != magic:
        raise ValueError(f"not an adaptive-model blob ({magic!r})")
    fields = layout.unpack_from(data)
    if fields[1] != 1:
        raise ValueError(f"unknown format version {fields[1]}")
    return tuple(fields)


class ProbabilityScorer(Protocol):
    version: str

    def score(
        self, customer: Mapping[str, Any], context: Mapping[str, Any], action_indices: Any
    ) -> FloatArray: ...


class BlendedScorer:
    """The engine's Scorer: Thompson-sampled probabilities from the adaptive model, on top
    of a base model's logit when there is one (``logit(base) + correction``), else on top
    of each action's prior.

    >>> views = [{"id": "a", "category": "shoes"}, {"id": "b", "category": "bags"}]
    >>> scorer = BlendedScorer(AdaptiveModel(dims=2**12), views, priors=[0.1, 0.2], seed=3)
    >>> scorer.version, scorer.mean({}, {}, np.array([1, 0])).round(3).tolist()
    ('adaptive', [0.2, 0.1])
    >>> p = scorer.selection_probabilities({}, {}, np.array([0, 1]))
    >>> float(p.sum())
    1.0
    """

    def __init__(
        self,
        adaptive: AdaptiveModel,
        actions: Sequence[Mapping[str, Any]],
        priors: Sequence[float] | None = None,
        base: ProbabilityScorer | None = None,
        seed: int | None = None,
        draws: int = 200,
    ) -> None:
        self.adaptive = adaptive
        self.base = base
        self.seed = seed
        self.draws = draws
        self.rng = np.random.default_rng(seed)
        self.table = adaptive.bind(actions, priors)
        self.version = "adaptive" if base is None else f"{base.version}+adaptive"

    def offsets(
        self, customer: Mapping[str, Any], context: Mapping[str, Any], action_indices: Any
    ) -> FloatArray:
        """The logit each candidate starts from; log it with the decision, the worker's
        update needs it (``Observation.offset``)."""
        rows = np.asarray(action_indices, dtype=np.intp)
        if self.base is None:
            found: FloatArray = self.table.offsets[rows]
            return found
        return logit(self.base.score(customer, context, rows))

    def moments(
        self, customer: Mapping[str, Any], context: Mapping[str, Any], action_indices: Any
    ) -> Moments:
        rows = np.asarray(action_indices, dtype=np.intp)
        offsets = None if self.base is None else self.offsets(customer, context, rows)
        return self.adaptive.moments(customer, context, self.table, rows, offsets)

    def score(
        self, customer: Mapping[str, Any], context: Mapping[str, Any], action_indices: Any
    ) -> FloatArray:
        return self.moments(customer, context, action_indices).sample(self.rng)

    def mean(
        self, customer: Mapping[str, Any], context: Mapping[str, Any], action_indices: Any
    ) -> FloatArray:
        return self.moments(customer, context, action_indices).expected()

    def selection_probabilities(
        self,
        customer: Mapping[str, Any],
        context: Mapping[str, Any],
        action_indices: Any,
        weights: FloatArray | None = None,
    ) -> FloatArray:
        """P(each candidate is ranked first), Monte-Carlo over ``draws`` Thompson draws."""
        moments = self.moments(customer, context, action_indices)
        return moments.selection_probabilities(self.rng, self.draws, weights)
