"""The adaptive model: Bayesian logistic regression over hashed features, learned online.

Each bucket ``i`` of a ``dims``-sized table (see :mod:`models.hashing` for what becomes a
feature) holds a Gaussian belief about its weight: mean ``m[i]``, precision ``q[i]``
(a diagonal posterior). A response is one Laplace step (Chapelle & Li 2011, "An Empirical
Evaluation of Thompson Sampling", Algorithm 3, with one observation per step). With ``x``
the row, ``o`` the offset and ``r`` the reward in [0, 1], the posterior mode is
``w = m + c x / q`` where the scalar ``c`` solves ``c = r - σ(o + m·x + c Σ x²/q)`` (Newton);
then ``m ← w`` and ``q ← q + x² p (1 - p)`` with ``p = σ(o + w·x)``. No retraining: the next
decision already sees the response.

Prior: every weight ``N(0, 1/prior_precision)``, and per candidate a fixed *offset*: the
logit of the action's ``prior`` (a new action starts at its prior propensity, as the engine's
PriorScorer does), or of a base model's probability (:class:`models.blended.BlendedScorer`),
so that the weights learn a correction. A state belongs to its offset: start a fresh one
for a new base model.

Thompson sampling draws each candidate's logit from its marginal ``N(o + Σ m x, Σ x²/q)``.
The blocks every candidate shares (global bias, customer and context tokens) are drawn once
per decision, as a joint draw of the weights would: their uncertainty moves all candidates
together instead of reshuffling the ranking. The candidates' own blocks are drawn
independently (exact for the ``action.id`` blocks; an approximation where two candidates
share an attribute bucket). A bucket that appears twice in one row (a hash collision, or a
match that is also a cross) counts ``x² + x'²`` in the variance, not ``(x + x')²``.

Cost (timeit, best of 9 runs, on 2 vCPUs at load average 3): 30 candidates × 40 active
features (9 of them shared): ``sample`` 50 µs (median 51-53), ``mean`` 48 µs; 100
candidates: ``sample`` 75 µs. Demo-world rows (~100 features): 61 µs for 30, 101 µs for 100.
``update``: 55-65 µs (the worker's cost: a response's features are hashed again).
``Moments.selection_probabilities``, 200 draws: 80-90 µs for 30 candidates, 250-440 µs for
100 (the normal draws dominate: ~12 ns each here).

>>> model = AdaptiveModel(dims=2**12, seed=1)
>>> shoes = {"id": "shoes-sale", "category": "shoes", "prior": 0.05}
>>> bags = {"id": "bag-sale", "category": "bags", "prior": 0.05}
>>> actions = model.bind([shoes, bags])
>>> fan = {"favourite": "shoes"}
>>> model.mean(fan, {}, actions).round(3).tolist()  # the priors
[0.05, 0.05]
>>> for _ in range(20):
...     model.update(fan, {}, shoes, 1.0)
...     model.update(fan, {}, bags, 0.0)
>>> model.mean(fan, {}, actions).round(2).tolist()
[0.93, 0.06]
>>> draw = model.sample(fan, {}, actions, np.random.default_rng(0))
>>> bool(draw[0] > draw[1])
True
>>> AdaptiveModel.from_bytes(model.to_bytes()).mean(fan, {}, actions).round(2).tolist()
[0.93, 0.06]
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from models.adaptive_kernels import candidate_moments, design_rows, laplace_steps
from models.adaptive_moments import (
    CONTENDER_SIGMAS,
    LOGIT_LIMIT,
    Moments,
    NormalPool,
    sigmoid,
)
from models.adaptive_state import (
    STATE_HEADER,
    Delta,
    pack_buckets,
    read_header,
    unpack_buckets,
)
from models.hashing import ActionTable, Hasher

__all__ = [
    "CONTENDER_SIGMAS",
    "LOGIT_LIMIT",
    "AdaptiveModel",
    "Delta",
    "Moments",
    "NormalPool",
    "Observation",
    "sigmoid",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Rows = IntArray | Sequence[int] | None
Actions = ActionTable | Sequence[Mapping[str, Any]]
KNOWN_ACTIONS_LIMIT = 10_000  # the learner's table of actions starts afresh past this


class Observation(NamedTuple):
    """One response; ``offset`` is the logit its decision started from (None: the prior);
    ``weight``: how many like it this one stands for (a learner that samples its
    negatives learns each kept one with the inverse of the share it keeps)."""

    customer: Mapping[str, Any]
    context: Mapping[str, Any]
    action: Mapping[str, Any]
    reward: float
    offset: float | None = None
    weight: float = 1.0


class AdaptiveModel:
    """Online Bayesian logistic regression with Thompson sampling, over hashed features."""

    def __init__(
        self, dims: int = 2**18, prior_precision: float = 1.0, seed: int | None = None
    ) -> None:
        if dims < 16 or dims > 2**31 or dims & (dims - 1):
            raise ValueError(f"dims must be a power of two in 16..2**31, got {dims}")
        if not (prior_precision > 0 and math.isfinite(prior_precision)):
            raise ValueError(f"prior_precision must be positive, got {prior_precision}")
        self.dims = dims
        self.prior_precision = prior_precision
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.hasher = Hasher(dims.bit_length() - 1)
        self.updates = 0
        # mean + 1j * variance per bucket, so one gather fetches both. The upper half is the
        # null half (padding, matches that missed): zero, never written.
        self._z = np.zeros(2 * dims, dtype=np.complex128)
        self._z.imag[:dims] = 1.0 / prior_precision
        self._q = np.full(dims, prior_precision)  # the precisions themselves
        # every action learned from, hashed once: id -> (its view, its row in the table)
        self._known: dict[str, tuple[dict[str, Any], int]] = {}
        self._known_table = self.hasher.table([])

    # ---- parameters -------------------------------------------------------------------
    @property
    def m(self) -> FloatArray:
        """Posterior means (a read-only view)."""
        view = self._z.real[: self.dims]
        view.flags.writeable = False
        return view

    @property
    def q(self) -> FloatArray:
        """Posterior precisions (a read-only view)."""
        view = self._q[:]
        view.flags.writeable = False
        return view

    def _touched(self) -> IntArray:
        changed = (self._z.real[: self.dims] != 0) | (self._q != self.prior_precision)
        return np.flatnonzero(changed).astype(np.int64)

    @property
    def state(self) -> Delta:
        """Everything learned, as a delta from the prior: applied to a fresh model of the
        same ``dims`` and ``prior_precision`` it reproduces this one (``q`` to rounding)."""
        index = self._touched()
        return Delta(
            index, self._z.real[index], self._q[index] - self.prior_precision, self.updates
        )

    def apply_delta(self, delta: Delta) -> None:
        """Add a delta (from :meth:`update_batch` of any worker, in any order, once each)."""
        index = delta.indices
        if len(index) and int(index[-1]) >= self.dims:
            raise ValueError("delta has buckets outside this model's table")
        q = self._q[index] + delta.dq
        if not bool(np.all(q > 0)):
            raise ValueError("delta would make a precision non-positive")
        self._z[index] = (self._z.real[index] + delta.dm) + 1j / q
        self._q[index] = q
        self.updates += delta.updates

    def to_bytes(self) -> bytes:
        """The touched buckets (20 bytes each); see :mod:`models.adaptive_state`."""
        index = self._touched()
        bits = self.hasher.bits
        head = STATE_HEADER.pack(b"NBAM", 1, bits, self.prior_precision, self.updates, len(index))
        return head + pack_buckets(index, self._z.real[index], self._q[index])

    @classmethod
    def from_bytes(cls, data: bytes, seed: int | None = None) -> AdaptiveModel:
        _, _, bits, precision, updates, count = read_header(STATE_HEADER, data, b"NBAM")
        model = cls(1 << bits, precision, seed)
        index, m, q = unpack_buckets(data, STATE_HEADER.size, count)
        if len(index) and int(index.max()) >= model.dims:
            raise ValueError("state has buckets outside its table")
        if not bool(np.all(q > 0)):
            raise ValueError("state has non-positive precisions")
        model._z[index] = m + 1j / q
        model._q[index] = q
        model.updates = updates
        return model

    # ---- features ---------------------------------------------------------------------
    def bind(
        self, action_views: Sequence[Mapping[str, Any]], priors: Sequence[float] | None = None
    ) -> ActionTable:
        """Hash a catalogue's actions once (at load); pass the table to sample and mean."""
        return self.hasher.table(action_views, priors)

    def _known_rows(self, views: Sequence[Mapping[str, Any]]) -> tuple[ActionTable, list[int]]:
        """A table holding these actions and their rows in it. The actions a decision
        showed are a different few each time; hashing each such set took the learner
        more CPU than learning from it. So every action learned from is hashed once,
        into one table, again only when its view changes (a catalogue change)."""
        rows = []
        for view in views:
            found = self._known.get(str(view.get("id")))
            if found is None or found[0] != view:
                return self._learn_views(views)
            rows.append(found[1])
        return self._known_table, rows

    def _learn_views(self, views: Sequence[Mapping[str, Any]]) -> tuple[ActionTable, list[int]]:
        """:meth:`_known_rows` for views not in the table yet (or changed): they join it."""
        if any("id" not in view for view in views):  # hashed by their position: as given
            return self.hasher.table(views), list(range(len(views)))
        known = {} if len(self._known) >= KNOWN_ACTIONS_LIMIT else dict(self._known)
        for view in views:
            known[str(view["id"])] = (dict(view), -1)
        table = self.hasher.table([view for view, _ in known.values()])
        self._known = {key: (view, row) for row, (key, (view, _)) in enumerate(known.items())}
        self._known_table = table
        rows = [self._known[str(view["id"])] for view in views]
        if any(stored != view for (stored, _), view in zip(rows, views, strict=True)):
            return self.hasher.table(views), list(range(len(views)))  # one id, two views
        return table, [row for _, row in rows]

    def features(
        self,
        customer: Mapping[str, Any],
        context: Mapping[str, Any],
        action_view: Mapping[str, Any],
    ) -> tuple[IntArray, FloatArray]:
        """The buckets of one candidate's row, shared blocks included, and their values
        ``x`` (summed where two features share a bucket)."""
        return self._rows([Observation(customer, context, action_view, 0.0)])[0]

    def moments(
        self,
        customer: Mapping[str, Any],
        context: Mapping[str, Any],
        actions: Actions,
        rows: Rows = None,
        offsets: FloatArray | None = None,
    ) -> Moments:
        """Each candidate's logit belief. ``actions``: a bound table (fast) or views;
        ``rows``: the candidates' rows in the table (default all); ``offsets``: logits that
        replace the actions' priors (a base model's)."""
        table = actions if isinstance(actions, ActionTable) else self.bind(actions)
        picked = (
            np.arange(len(table), dtype=np.int64)
            if rows is None
            else np.asarray(rows, dtype=np.int64)
        )
        if offsets is not None and len(offsets) != len(picked):  # the kernel reads blind
            raise ValueError(f"{len(offsets)} offsets for {len(picked)} candidates")
        request = self.hasher.packed_request(customer, context)
        mean, variance = np.empty(len(picked)), np.empty(len(picked))
        shared_mean, shared_variance = candidate_moments(
            request.packed,
            request.n,
            request.c,
            request.shared_values,
            table.packed,
            table.scales,
            picked,
            table.width,
            table.depth,
            request.block_values,
            self.hasher.shift_bits,
            self._z,
            table.offsets if offsets is None else offsets,
            offsets is None,
            mean,
            variance,
        )
        return Moments(mean, variance, shared_mean, shared_variance)

    def sample(
        self,
        customer: Mapping[str, Any],
        context: Mapping[str, Any],
        action_views: Actions,
        rng: np.random.Generator | None = None,
        rows: Rows = None,
        offsets: FloatArray | None = None,
    ) -> FloatArray:
        """A Thompson draw of every candidate's click probability (the hot path)."""
        moments = self.moments(customer, context, action_views, rows, offsets)
        return moments.sample(self.rng if rng is None else rng)

    def mean(
        self,
        customer: Mapping[str, Any],
        context: Mapping[str, Any],
        action_views: Actions,
        rows: Rows = None,
        offsets: FloatArray | None = None,
    ) -> FloatArray:
        """σ(posterior mean logit) per candidate: for explanations and logs."""
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
        """One Laplace step on one response (reward in [0, 1], 1 = clicked). ``offset``:
        the logit the decision started from, if not the action's prior."""
        self.update_batch([Observation(customer, context, action_view, reward, offset)])

    def update_batch(self, observations: Iterable[Observation]) -> Delta:
        """The same sequential updates; returns their change, for the other processes.
        Every observation is checked before the first is learned."""
        batch = list(observations)
        if not batch:
            return Delta.empty()
        rewards = np.array([obs.reward for obs in batch], dtype=np.float64)
        offsets = np.array(
            [
                _prior_logit(*self._known_rows((obs.action,))) if obs.offset is None else obs.offset
                for obs in batch
            ],
            dtype=np.float64,
        )
        weights = np.array([obs.weight for obs in batch], dtype=np.float64)
        _check(rewards, offsets, weights)
        index, x, bounds = self._flat_rows(batch)
        seen = np.zeros(self.dims, dtype=bool)  # a sort of every cell of the batch cost
        seen[index] = True  # the worker more than marking them
        touched = np.flatnonzero(seen)
        old_m, old_q = self._z.real[touched], self._q[touched]
        laplace_steps(self._z, self._q, index, x, bounds, rewards, offsets, weights)
        self.updates += len(batch)
        dm = self._z.real[touched] - old_m
        return Delta(touched, dm, self._q[touched] - old_q, len(batch))

    def _rows(self, batch: Sequence[Observation]) -> list[tuple[IntArray, FloatArray]]:
        """:meth:`features` of every observation."""
        index, x, bounds = self._flat_rows(batch)
        return [
            (index[a:b], x[a:b])
            for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True)
        ]

    def _flat_rows(self, batch: Sequence[Observation]) -> tuple[IntArray, FloatArray, IntArray]:
        """:meth:`features` of every observation, end to end (row ``r`` is
        ``[bounds[r]:bounds[r + 1]]``). The observations of one decision (the same
        customer and context objects, one per action shown) share one hashed request
        and one table of their actions, and their rows are worked out by one compiled
        call (:func:`models.adaptive_kernels.design_rows`)."""
        decisions: dict[tuple[int, int], list[int]] = {}
        for n, obs in enumerate(batch):
            decisions.setdefault((id(obs.customer), id(obs.context)), []).append(n)
        work = []
        widest = 0
        for members in decisions.values():
            head = batch[members[0]]
            request = self.hasher.request(head.customer, head.context)
            table, rows = self._known_rows([batch[n].action for n in members])
            cells = 2 * len(request.tokens) + table.width + 2 * table.depth * len(request.crossing)
            widest = max(widest, cells)
            shown = np.array(rows, dtype=np.intp)
            work.append(
                (
                    np.array(members, dtype=np.int64),
                    request,
                    (table.packed[shown], table.scales[shown], table.width, table.depth),
                )
            )
        index = np.empty((len(batch), widest), dtype=np.int64)
        x = np.empty((len(batch), widest))
        lengths = np.zeros(len(batch), dtype=np.int64)
        shift, dims = self.hasher.shift_bits, self.dims
        for at, request, (packed, scales, width, depth) in work:
            design_rows(
                request.tokens,
                request.shared_values,
                request.crossing,
                request.values,
                packed,
                scales,
                width,
                depth,
                request.block_values,
                shift,
                dims,
                at,
                index,
                x,
                lengths,
            )
        filled = np.arange(widest) < lengths[:, None]
        bounds = np.zeros(len(batch) + 1, dtype=np.int64)
        np.cumsum(lengths, out=bounds[1:])
        return index[filled], x[filled], bounds


def _prior_logit(table: ActionTable, rows: list[int]) -> float:
    return float(table.offsets[rows[0]])


def _check(rewards: FloatArray, offsets: FloatArray, weights: FloatArray) -> None:
    """The first unusable observation of a batch, by its value."""
    for values, usable, message in (
        (rewards, (rewards >= 0.0) & (rewards <= 1.0), "reward must be in [0, 1]"),
        (offsets, np.isfinite(offsets), "offset must be finite"),
        (weights, np.isfinite(weights) & (weights > 0), "weight must be positive"),
    ):
        if not usable.all():
            raise ValueError(f"{message}, got {values[int(np.argmin(usable))]}")
