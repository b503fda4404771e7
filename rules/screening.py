"""Eligibility of many candidates at once, with partial evaluation.

At load, each rule an action must pass is sorted by what it reads: ``action`` alone
(settled at load, see :mod:`rules.catalogue`), ``customer``/``context``/``now`` only
(a *request check*: evaluated once per decision, however many actions share it), or
both (a *mixed check*: evaluated per candidate). Request checks become the columns of
a boolean matrix, so screening 100 candidates is a few numpy operations plus the mixed
checks of the candidates still standing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rules.expressions import Expression

EMPTY: Mapping[str, object] = {}


@dataclass(frozen=True, slots=True)
class Check:
    """A named condition a candidate must pass for one request."""

    name: str
    expression: Expression


class Screener:
    def __init__(
        self,
        checks: Sequence[Sequence[Check]],
        valid_from: Sequence[float | None],
        valid_to: Sequence[float | None],
    ) -> None:
        """``checks[i]``: the ordered checks of action ``i`` that need the request."""
        self.request_checks: list[Expression] = []
        by_text: dict[str, int] = {}
        self.mixed: list[tuple[Check, ...]] = []
        self.order: list[tuple[tuple[str, int, Check], ...]] = []
        columns: list[list[int]] = []
        for action_checks in checks:
            cols: list[int] = []
            mixed: list[Check] = []
            order: list[tuple[str, int, Check]] = []
            for check in action_checks:
                if "action" in check.expression.roots:
                    mixed.append(check)
                    order.append((check.name, -1, check))
                    continue
                col = by_text.get(check.expression.text)
                if col is None:
                    col = by_text[check.expression.text] = len(self.request_checks)
                    self.request_checks.append(check.expression)
                cols.append(col)
                order.append((check.name, col, check))
            columns.append(cols)
            self.mixed.append(tuple(mixed))
            self.order.append(tuple(order))
        self.requires = np.zeros((len(checks), len(self.request_checks)), dtype=bool)
        for row, cols in enumerate(columns):
            self.requires[row, cols] = True
        self.valid_from = np.array([-np.inf if t is None else t for t in valid_from], dtype=float)
        self.valid_to = np.array([np.inf if t is None else t for t in valid_to], dtype=float)
        self.has_mixed = np.array([bool(m) for m in self.mixed], dtype=bool)

    def screen(
        self,
        idx: np.ndarray,
        views: Sequence[Mapping[str, Any]],
        customer: Mapping[str, Any],
        context: Mapping[str, Any],
        now: float,
    ) -> tuple[np.ndarray, np.ndarray]:
        """A keep-mask over ``idx``, and the request checks' results (for explanations)."""
        keep = (self.valid_from[idx] <= now) & (now <= self.valid_to[idx])
        passed = np.fromiter(
            (e.test(customer, context, EMPTY, now) for e in self.request_checks),
            dtype=bool,
            count=len(self.request_checks),
        )
        if not passed.all():
            keep &= ~self.requires[np.ix_(idx, ~passed)].any(axis=1)
        for pos in np.flatnonzero(keep & self.has_mixed[idx]):
            action = int(idx[pos])
            view = views[action]
            for check in self.mixed[action]:
                if not check.expression.test(customer, context, view, now):
                    keep[pos] = False
                    break
        return keep, passed

    def reason(
        self,
        action: int,
        view: Mapping[str, Any],
        passed: np.ndarray,
        customer: Mapping[str, Any],
        context: Mapping[str, Any],
        now: float,
    ) -> str | None:
        """The first rule that excludes ``action``, in the order they are declared."""
        if not self.valid_from[action] <= now <= self.valid_to[action]:
            return "validity_window"
        for name, col, check in self.order[action]:
            ok = passed[col] if col >= 0 else check.expression.test(customer, context, view, now)
            if not ok:
                return name
        return None

    def names(self, action: int) -> list[str]:
        return [name for name, _, _ in self.order[action]]
