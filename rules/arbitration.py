"""Arbitration: which eligible candidates win, and in what order.

priority = propensity^a × context weight × value^b × lever^c × kind weight, with the
exponents, kind weights and context weights configured per channel and placement.
Context weights are rule expressions (``when``) compiled once; a weight that does not
read ``action`` is decided once per request.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from engine.domain import Action, Arbitration
from rules.expressions import Expression, compile_expression
from rules.screening import signature

EMPTY: Mapping[str, object] = {}


class CompiledArbitration:
    """One channel's (or placement's) arbitration, bound to one catalogue.

    >>> import numpy as np
    >>> from engine.domain import Action, Arbitration
    >>> acts = [Action(id="a", kind="offer", name="A", channels=["web"], value=10),
    ...         Action(id="b", kind="activity", name="B", channels=["web"], value=10)]
    >>> arb = CompiledArbitration(Arbitration(kind_weights={"activity": 3.0}), acts)
    >>> idx = np.array([0, 1])
    >>> priority, weight = arb.priorities(idx, np.array([0.2, 0.1]), {}, {}, [{}, {}], 0.0)
    >>> [round(float(p), 3) for p in priority], arb.top(idx, priority, 2, [{}, {}])
    ([2.0, 3.0], [1, 0])
    """

    def __init__(
        self, config: Arbitration, actions: Sequence[Action], source: str = "arbitration"
    ) -> None:
        self.config = config
        self.values = np.array([a.value for a in actions], dtype=float) ** config.value_power
        self.levers = np.array([a.lever for a in actions], dtype=float) ** config.lever_power
        self.kind_weight = np.array(
            [config.kind_weights.get(a.kind, 1.0) for a in actions], dtype=float
        )
        self.static = self.values * self.levers * self.kind_weight
        self.weights: list[tuple[Expression, float]] = [
            (compile_expression(w.when, source), w.weight) for w in config.context_weights
        ]
        # candidates that agree on what a weight reads of the action agree on the weight:
        # per weight, a code per action and one representative view per code
        views = [a.rule_view() for a in actions]
        self.codes: list[np.ndarray] = []
        self.representatives: list[list[Mapping[str, Any]]] = []
        for expression, _ in self.weights:
            found: dict[Any, int] = {}
            reps: list[Mapping[str, Any]] = []
            codes = []
            for index, view in enumerate(views):
                key = signature(expression, view, index)
                if key not in found:
                    found[key] = len(reps)
                    reps.append(view)
                codes.append(found[key])
            self.codes.append(np.asarray(codes, dtype=np.intp))
            self.representatives.append(reps)
        self.diversity = config.diversity

    def priorities(
        self,
        idx: np.ndarray,
        propensity: np.ndarray,
        customer: Mapping[str, Any],
        context: Mapping[str, Any],
        views: Sequence[Mapping[str, Any]],
        now: float,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The priority of each candidate and its context weight (for explanations)."""
        weight = np.ones(len(idx))
        for k, (expression, factor) in enumerate(self.weights):
            if "action" not in expression.roots:
                if expression.test(customer, context, EMPTY, now):
                    weight *= factor
                continue
            codes = self.codes[k][idx]
            reps = self.representatives[k]
            results = np.zeros(len(reps), dtype=bool)
            for code in set(codes.tolist()):  # a handful: cheaper than np.unique
                results[code] = expression.test(customer, context, reps[code], now)
            weight[results[codes]] *= factor
        p = (
            propensity
            if self.config.propensity_power == 1.0
            else propensity**self.config.propensity_power
        )
        return p * weight * self.static[idx], weight

    def top(
        self, idx: np.ndarray, priority: np.ndarray, k: int, views: Sequence[Mapping[str, Any]]
    ) -> list[int]:
        """Positions of the ``k`` best, at most one per value of the diversity attribute."""
        order = np.argsort(-priority, kind="stable")
        if self.diversity is None:
            return [int(i) for i in order[:k]]
        chosen: list[int] = []
        seen: set[Any] = set()
        for pos in order:
            group = views[int(idx[pos])].get(self.diversity)
            if group is not None and group in seen:
                continue
            seen.add(group)
            chosen.append(int(pos))
            if len(chosen) == k:
                break
        return chosen
