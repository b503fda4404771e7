"""The counts an uplift report is built from, and the checks that refuse impossible ones.

The stream worker keeps one :class:`ArmCounts` per (action, channel, group), possibly in
shards that the report adds up. It counts decisions from the decision log and responses from
the responses topic, so a response can be counted before its decision (the log lags under load,
by thousands of records), and a response naming an action its decision did not choose lands in
a cell whose decisions never come. Such a cell is ahead of its decisions, not wrong: it passes
the checks here, and the report sets it aside (see :mod:`models.uplift`). Counts that cannot be
right however late the log is (negative or non-integer counts, sums that are not finite, a
value sum without a sum of squares) are refused with :class:`CountsError` naming the field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["GROUPS", "KNOWN_OUTCOMES", "ArmCounts", "CountsError", "check_counts"]

KNOWN_OUTCOMES = frozenset({"impression", "click", "accept", "decline", "convert"})
GROUPS: tuple[str, str] = ("treatment", "control")


class CountsError(ValueError):
    """A counter cell that cannot be right; ``field`` names the offending field."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class ArmCounts:
    """One (action, channel, group) cell of the uplift counters."""

    action_id: str
    channel: str
    campaign: str | None  # the action's attributes["campaign"], if any
    group: str  # "treatment" | "control"
    decisions: int  # decisions in which the action was chosen
    responders: dict[str, int]  # outcome -> decisions with at least one such response
    value_sum: float  # sum of response values over those decisions
    value_sum_sq: float  # sum of squared per-decision values


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def check_counts(cell: ArmCounts) -> None:
    """Refuse a cell no lag of the decision log explains; a cell ahead of its decisions passes."""
    where = f"cell ({cell.action_id!r}, {cell.channel!r}, {cell.group!r})"
    for name in ("action_id", "channel"):
        text = getattr(cell, name)
        if not isinstance(text, str) or not text:
            raise CountsError(f"{where}: {name} must be a non-empty string", name)
    if cell.campaign is not None and not isinstance(cell.campaign, str):
        raise CountsError(f"{where}: campaign must be a string or null", "campaign")
    if cell.group not in GROUPS:
        raise CountsError(f"{where}: group must be one of {GROUPS}", "group")
    if not _is_count(cell.decisions):
        raise CountsError(f"{where}: decisions must be an integer >= 0", "decisions")
    for outcome, count in cell.responders.items():
        if outcome not in KNOWN_OUTCOMES:
            raise CountsError(f"{where}: unknown outcome {outcome!r}", "responders")
        if not _is_count(count):  # more than the decisions: see models.uplift._unmatched
            raise CountsError(
                f"{where}: {outcome} responders must be an integer >= 0, got {count!r}",
                "responders",
            )
    total, total_sq = cell.value_sum, cell.value_sum_sq
    if not isinstance(total, int | float) or not math.isfinite(total):
        raise CountsError(f"{where}: value_sum must be a finite number", "value_sum")
    if not isinstance(total_sq, int | float) or not math.isfinite(total_sq) or total_sq < 0:
        raise CountsError(f"{where}: value_sum_sq must be a finite number >= 0", "value_sum_sq")
    if total_sq == 0 and total * total > 1e-9:  # no number of decisions has these sums
        raise CountsError(f"{where}: value_sum is not 0 but value_sum_sq is", "value_sum_sq")
