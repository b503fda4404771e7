"""Eligibility of many candidates at once, with partial evaluation.

At load, each rule an action must pass is sorted by what it reads: ``action`` alone
(settled at load, see :mod:`rules.catalogue`), or the request too. Every rule that needs
the request becomes a *column*: a request-only rule is one column however many actions
share it; a rule that also reads the action is one column per distinct value of the
action attributes it reads (``action.category == context.page_category`` over 100
actions in 6 categories is 6 columns). A decision evaluates only the columns its
candidates need, once each, and screens all candidates with one boolean-matrix step.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rules.expressions import Expression

EMPTY: Mapping[str, object] = {}


@dataclass(frozen=True, slots=True)
class _Plan:
    idx: np.ndarray  # held, so that its id is not reused while the plan is kept
    spared: np.ndarray  # (columns, candidates): which candidates each column spares
    columns: tuple[int, ...]  # the columns any of them needs
    windowed: bool  # some candidate has a validity window
    everyone: np.ndarray  # all True, one per candidate


@dataclass(frozen=True, slots=True)
class Check:
    """A named condition a candidate must pass for one request."""

    name: str
    expression: Expression


def _hashable(value: Any) -> Hashable:
    if isinstance(value, list | tuple):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    return value  # type: ignore[no-any-return]


def signature(expression: Expression, view: Mapping[str, Any], index: int) -> Hashable:
    """What of the action a rule reads; candidates with equal signatures get equal results."""
    if "action" not in expression.roots:
        return ()
    values: list[Hashable] = []
    for keys in expression.action_paths:
        if not keys:  # the whole record: only this action has this signature
            return ("#", index)
        value: Any = view
        for key in keys:
            value = value.get(key) if isinstance(value, Mapping) else None
        values.append(_hashable(value))
    return tuple(values)


class Screener:
    def __init__(
        self,
        checks: Sequence[Sequence[Check]],
        views: Sequence[Mapping[str, Any]],
        valid_from: Sequence[float | None],
        valid_to: Sequence[float | None],
    ) -> None:
        """``checks[i]``: the ordered checks of action ``i`` that need the request."""
        self.columns: list[tuple[Expression, Mapping[str, Any]]] = []
        by_key: dict[tuple[str, Hashable], int] = {}
        self.order: list[tuple[tuple[str, int], ...]] = []
        rows: list[list[int]] = []
        for index, (action_checks, view) in enumerate(zip(checks, views, strict=True)):
            cols: list[int] = []
            order: list[tuple[str, int]] = []
            for check in action_checks:
                key = (check.expression.text, signature(check.expression, view, index))
                col = by_key.get(key)
                if col is None:
                    col = by_key[key] = len(self.columns)
                    self.columns.append((check.expression, view))
                cols.append(col)
                order.append((check.name, col))
            rows.append(cols)
            self.order.append(tuple(order))
        self.requires = np.zeros((len(checks), len(self.columns)), dtype=bool)
        for row, cols in enumerate(rows):
            self.requires[row, cols] = True
        self.valid_from = np.array([-np.inf if t is None else t for t in valid_from], dtype=float)
        self.valid_to = np.array([np.inf if t is None else t for t in valid_to], dtype=float)
        self._plans: dict[int, _Plan] = {}
        self._all_passed = np.ones(len(self.columns), dtype=bool)  # copied: cheaper than np.ones

    def screen(
        self,
        idx: np.ndarray,
        customer: Mapping[str, Any],
        context: Mapping[str, Any],
        now: float,
    ) -> tuple[np.ndarray, np.ndarray]:
        """A keep-mask over ``idx``, and each column's result (for explanations)."""
        plan = self._plans.get(id(idx))
        if plan is None or plan.idx is not idx:  # an array of the moment: the fallback's
            plan = self.plan(idx)
        if plan.windowed:
            keep = (self.valid_from[idx] <= now) & (now <= self.valid_to[idx])
        else:
            keep = plan.everyone.copy()
        passed = self._all_passed.copy()
        for col in plan.columns:
            expression, view = self.columns[col]
            if not expression.test(customer, context, view, now):
                passed[col] = False
                # one row per failed column: in the demo world's decisions a masked
                # any() over the candidates' columns took 4-6% of a decision
                keep &= plan.spared[col]
        return keep, passed

    def prepare(self, arrays: Iterable[np.ndarray]) -> None:
        """Plans for a catalogue's candidate arrays, made at load: a placement's
        candidates are the same (read-only) array at every decision."""
        self._plans = {id(idx): self.plan(idx) for idx in arrays}

    def plan(self, idx: np.ndarray) -> _Plan:
        """Which rule columns the candidates ``idx`` need, and whether any of them has a
        validity window."""
        block = self.requires[idx]
        return _Plan(
            idx,
            np.ascontiguousarray(~block.T),
            tuple(int(c) for c in np.flatnonzero(block.any(axis=0))),
            bool(np.isfinite(self.valid_from[idx]).any() or np.isfinite(self.valid_to[idx]).any()),
            np.ones(len(idx), dtype=bool),
        )

    def reason(self, action: int, now: float, passed: np.ndarray) -> str | None:
        """The first rule that excludes ``action``, in the order they are declared."""
        if not self.valid_from[action] <= now <= self.valid_to[action]:
            return "validity_window"
        for name, col in self.order[action]:
            if not passed[col]:
                return name
        return None

    def names(self, action: int) -> list[str]:
        return [name for name, _ in self.order[action]]
