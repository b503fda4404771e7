"""The engine's scorer once the adaptive model is on: a base model (when one is registered)
plus the adaptive model's online correction, Thompson-sampled.

With a base model (an ONNX :class:`~models.onnx_model.BoundModel`, whose ``score`` returns
probabilities and ``logits_many`` their log-odds) each candidate starts from
``logit(base probability)`` and the adaptive
weights add a correction learned from live responses; without one, it starts from the
logit of the action's prior and the adaptive model is the whole model. The offset used is
part of what a decision must log: the worker's update needs the same one
(:meth:`BlendedScorer.offsets`, ``Observation.offset``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from models.adaptive import AdaptiveModel, Moments, NormalPool
from models.adaptive_kernels import logits
from models.hashing import logit

__all__ = ["BlendedScorer", "ProbabilityScorer"]

FloatArray = npt.NDArray[np.float64]


class ProbabilityScorer(Protocol):
    """What a base model offers (the engine's Scorer): a probability per candidate."""

    version: str

    def score(
        self, customer: Mapping[str, Any], context: Mapping[str, Any], action_indices: Any
    ) -> FloatArray: ...


class BlendedScorer:
    """Bound to one catalogue (its action views, in order); a Scorer for the engine.

    >>> views = [{"id": "a", "category": "shoes"}, {"id": "b", "category": "bags"}]
    >>> scorer = BlendedScorer(AdaptiveModel(dims=2**12), views, priors=[0.1, 0.2], seed=3)
    >>> scorer.version, scorer.mean({}, {}, np.array([1, 0])).round(3).tolist()
    ('adaptive', [0.2, 0.1])
    >>> p = scorer.score({"segment": "gold"}, {}, np.array([0, 1]))
    >>> bool(((0 < p) & (p < 1)).all())
    True
    >>> float(scorer.selection_probabilities({}, {}, np.array([0, 1])).sum())
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
        self.actions = actions
        self.priors = priors
        self.base = base
        self.seed = seed
        self.draws = draws
        self.rng = np.random.default_rng(seed)
        self._normals: NormalPool | None = None
        self.table = adaptive.bind(actions, priors)
        self.version = "adaptive" if base is None else f"{base.version}+adaptive"

    @property
    def normals(self) -> NormalPool:
        """Normals made ahead for the logged selection probabilities (made on first use:
        a scorer is rebuilt at every catalogue or model change)."""
        if self._normals is None:
            self._normals = NormalPool(self.rng)
        return self._normals

    def offsets(
        self, customer: Mapping[str, Any], context: Mapping[str, Any], action_indices: Any
    ) -> FloatArray:
        """The logit each candidate starts from: the base model's, else the prior's."""
        rows = np.asarray(action_indices, dtype=np.intp)
        if self.base is None:
            found: FloatArray = self.table.offsets[rows]
            return found
        if hasattr(self.base, "logits_many"):
            found = self.base.logits_many([(customer, context, rows)])[0]
            return found
        return logit(self.base.score(customer, context, rows))

    def moments(
        self, customer: Mapping[str, Any], context: Mapping[str, Any], action_indices: Any
    ) -> Moments:
        """Compute once, then ``sample``, ``expected`` and ``selection_probabilities``."""
        rows = np.asarray(action_indices, dtype=np.intp)
        offsets = None if self.base is None else self.offsets(customer, context, rows)
        return self.adaptive.moments(customer, context, self.table, rows, offsets)

    def evaluate_many(
        self, asks: Sequence[tuple[Mapping[str, Any], Mapping[str, Any], Any]]
    ) -> list[tuple[FloatArray, Moments]]:
        """Offsets and moments of several decisions: one base-model call serves them
        all, and each decision's offsets serve its draw, its logged offsets and its
        logged selection probabilities."""
        rows = [np.asarray(idx, dtype=np.intp) for _, _, idx in asks]
        pairs = [(c, x, r) for (c, x, _), r in zip(asks, rows, strict=True)]
        if self.base is not None and hasattr(self.base, "logits_many"):
            offsets = self.base.logits_many(pairs)  # an ONNX model's own log-odds
        elif self.base is not None and hasattr(self.base, "score_many"):
            offsets = [_logits(p) for p in self.base.score_many(pairs)]
        else:
            offsets = [self.offsets(c, x, r) for c, x, r in pairs]
        return [
            (o, self.adaptive.moments(c, x, self.table, r, o))
            for (c, x, r), o in zip(pairs, offsets, strict=True)
        ]

    def score(
        self, customer: Mapping[str, Any], context: Mapping[str, Any], action_indices: Any
    ) -> FloatArray:
        """A Thompson draw of each candidate's probability (what the engine ranks by)."""
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
        """P(each candidate ranks first), Monte-Carlo over ``draws`` Thompson draws: the
        propensity to log for off-policy evaluation."""
        moments = self.moments(customer, context, action_indices)
        return moments.selection_probabilities(self.rng, self.draws, weights, self.normals)


def _logits(p: FloatArray) -> FloatArray:
    """:func:`models.hashing.logit` of a base model's probabilities, in one compiled call."""
    out = np.empty(len(p))
    logits(np.asarray(p, dtype=np.float64), 1e-9, out)
    return out
