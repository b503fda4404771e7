"""The uplift report: treatment against control, per action, campaign and channel.

A sticky hold-out share of each channel's customers (the control group) gets a random eligible
action instead of the arbitrated one; the stream worker keeps one :class:`ArmCounts` per
(action, channel, group). From those counters alone, in one pass over them, this module builds
three tables:

- per action and channel: how the action does when the engine chose it (treatment) against when
  chance chose it (control), i.e. what the targeting adds for that action;
- per campaign and channel: the cells of the campaign's actions added up;
- per channel: every action-decision of the channel added up, i.e. the engine's policy against
  a random one. The unit is one action shown in one decision, so a decision that showed three
  actions counts three times.

Each row gives both groups' decisions, response rates (click, accept, convert) and value per
decision, and for each outcome the absolute uplift (difference of rates, Newcombe hybrid score
interval) and the relative uplift (ratio of rates - 1, Katz log interval), plus the uplift of
value per decision (Welch normal interval): see :mod:`models.uplift_stats`. A verdict is given
only where the absolute interval excludes zero. Each verdict is its own 95% test: among many
actions with no effect, about one in forty is called a winner by chance.

Counts ahead of their decisions (the decision log lags the responses, or a response named an
action its decision did not choose: see :mod:`models.uplift_counts`). A cell (action, channel,
group), its shards added up, whose responders of a reported outcome exceed its decisions, or
whose value sums need more decisions than it counts (``value_sum**2 > decisions *
value_sum_sq``), is not a set of decisions and their responders. Such a cell is *set aside*: it
is left out of every rate, uplift, interval and verdict, in its action's row and in the campaign
and channel rows it belongs to, and each of those rows is ``flagged`` with a ``note``; the
group's ``set_aside`` still shows the cell's counts, with ``unmatched``, per outcome, the
responders beyond its decisions: at least that many responses have no matching decision.
Capping the responders at the decisions instead would report a rate of up to 100% from counts
known to be wrong, and can call a winner out of a lagging log; leaving the cell out keeps every
rate a rate of decisions actually counted. Once the decisions are counted, the cell is measured
again. Outcomes the report does not measure (impression, decline) never set a cell aside. Counts
that cannot be right however late the log is are refused with :class:`CountsError`.

>>> cells = [
...     ArmCounts("a", "web", None, "treatment", 10_000, {"click": 600}, 6000.0, 60000.0),
...     ArmCounts("a", "web", None, "control", 10_000, {"click": 400}, 4000.0, 40000.0),
... ]
>>> row = build_report(cells).actions[0]
>>> row.verdict, row.reach, row.outcome("click").absolute.rounded(4)
('winner', 20000, Interval(estimate=0.02, low=0.014, high=0.0261))

A click on an action no decision chose is reported, flagged, and measures nothing:

>>> stray = ArmCounts("b", "web", None, "treatment", 0, {"click": 1}, 0.0, 0.0)
>>> report = build_report([*cells, stray])
>>> row = report.actions[1]
>>> row.flagged, row.treatment.set_aside.unmatched["click"], row.verdict
(True, 1, None)
>>> report.channels[0].flagged, report.channels[0].treatment.responders["click"]
(True, 600)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from models.uplift_counts import GROUPS, KNOWN_OUTCOMES, ArmCounts, CountsError, check_counts
from models.uplift_stats import (
    Interval,
    katz_ratio,
    newcombe_difference,
    verdict,
    welch_difference,
    z_value,
)

__all__ = [
    "GROUPS",
    "KNOWN_OUTCOMES",
    "METHODS",
    "OUTCOMES",
    "ArmCounts",
    "CountsError",
    "GroupStats",
    "OutcomeUplift",
    "SetAside",
    "UpliftReport",
    "UpliftRow",
    "build_report",
]

OUTCOMES: tuple[str, ...] = ("click", "accept", "convert")
METHODS: dict[str, str] = {
    "absolute": "Newcombe hybrid score interval (1998, method 10), from Wilson intervals",
    "relative": "Katz log interval for the ratio of rates, minus 1; null with zero responders",
    "value": "Welch normal interval from each group's sum and sum of squares",
    "set_aside": "a cell whose responders exceed its decisions (responses counted before their "
    "decision, or naming an action the decision did not choose) is left out of rates, uplift "
    "and verdicts; its counts are in the group's set_aside and the row is flagged",
}


def _unmatched(cell: _Tally) -> dict[str, int] | None:
    """Per reported outcome, the responders beyond the cell's decisions, if the cell is ahead
    of its decisions (responders beyond them, or value sums that need more of them); else None.

    Cauchy-Schwarz: sum^2 <= n * sum of squares, and both are 0 with no decisions.
    """
    beyond = {o: max(0, cell.responders[o] - cell.decisions) for o in OUTCOMES}
    total, total_sq = cell.value_sum, cell.value_sum_sq
    if any(beyond.values()) or total * total > cell.decisions * total_sq * (1 + 1e-9) + 1e-9:
        return beyond
    return None


@dataclass
class _Tally:
    decisions: int = 0
    responders: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    value_sum: float = 0.0
    value_sum_sq: float = 0.0
    aside: _Tally | None = None  # the cells set aside, added up
    aside_cells: int = 0
    unmatched: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))

    def add(self, cell: ArmCounts | _Tally) -> None:
        self.decisions += cell.decisions
        for outcome in OUTCOMES:
            self.responders[outcome] += cell.responders.get(outcome, 0)
        self.value_sum += cell.value_sum
        self.value_sum_sq += cell.value_sum_sq

    def set_aside(self, cell: _Tally, unmatched: Mapping[str, int]) -> None:
        if self.aside is None:
            self.aside = _Tally()
        self.aside.add(cell)
        self.aside_cells += 1
        for outcome in OUTCOMES:
            self.unmatched[outcome] += unmatched[outcome]

    def freeze(self) -> GroupStats:
        aside = None
        if self.aside is not None:
            aside = SetAside(
                self.aside_cells,
                self.aside.decisions,
                dict(self.aside.responders),
                dict(self.unmatched),
                self.aside.value_sum,
            )
        return GroupStats(
            self.decisions, dict(self.responders), self.value_sum, self.value_sum_sq, aside
        )


@dataclass(frozen=True, slots=True)
class SetAside:
    """A group's cells that are ahead of their decisions, added up, left out of its rates.

    ``unmatched``: per outcome, the responders those cells count beyond their decisions, so
    at least that many responses have no matching decision counted.
    """

    cells: int
    decisions: int
    responders: dict[str, int]
    unmatched: dict[str, int]
    value_sum: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "cells": self.cells,
            "decisions": self.decisions,
            "responders": dict(self.responders),
            "unmatched": dict(self.unmatched),
            "value_sum": self.value_sum,
        }


@dataclass(frozen=True, slots=True)
class GroupStats:
    """One group's totals in a row, from its measured cells; rates are ``None`` with no
    decisions. ``set_aside`` holds the cells ahead of their decisions, if any."""

    decisions: int
    responders: dict[str, int]
    value_sum: float
    value_sum_sq: float
    set_aside: SetAside | None = None

    def rate(self, outcome: str) -> float | None:
        if self.decisions == 0:
            return None
        return self.responders.get(outcome, 0) / self.decisions

    @property
    def value_per_decision(self) -> float | None:
        return self.value_sum / self.decisions if self.decisions else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "decisions": self.decisions,
            "responders": dict(self.responders),
            "rates": {outcome: self.rate(outcome) for outcome in OUTCOMES},
            "value_per_decision": self.value_per_decision,
            "set_aside": None if self.set_aside is None else self.set_aside.to_dict(),
        }


def _interval_dict(interval: Interval | None) -> dict[str, float] | None:
    if interval is None:
        return None
    return {"estimate": interval.estimate, "low": interval.low, "high": interval.high}


@dataclass(frozen=True, slots=True)
class OutcomeUplift:
    """Treatment rate minus control rate for one outcome, and the rate ratio minus one."""

    outcome: str
    absolute: Interval | None
    relative: Interval | None
    verdict: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "absolute": _interval_dict(self.absolute),
            "relative": _interval_dict(self.relative),
            "verdict": self.verdict,
        }


@dataclass(frozen=True, slots=True)
class UpliftRow:
    """One row of a table: an action, a campaign or a whole channel, within one channel."""

    level: str  # "action" | "campaign" | "channel"
    channel: str
    action_id: str | None
    campaign: str | None
    actions: tuple[str, ...]  # the actions whose cells the row adds up
    treatment: GroupStats
    control: GroupStats
    uplifts: tuple[OutcomeUplift, ...]  # one per outcome, in OUTCOMES order
    value: Interval | None  # value per decision, treatment minus control
    value_verdict: str | None
    primary_outcome: str

    @property
    def reach(self) -> int:
        """Decisions in which the row's actions were chosen, both groups."""
        return self.treatment.decisions + self.control.decisions

    def outcome(self, name: str) -> OutcomeUplift:
        for uplift in self.uplifts:
            if uplift.outcome == name:
                return uplift
        raise KeyError(name)

    @property
    def verdict(self) -> str | None:
        """The verdict on the primary outcome."""
        return self.outcome(self.primary_outcome).verdict

    @property
    def label(self) -> str:
        return self.action_id or self.campaign or self.channel

    @property
    def flagged(self) -> bool:
        """A cell of the row was set aside: it counts more responses than decisions."""
        return self.treatment.set_aside is not None or self.control.set_aside is not None

    @property
    def note(self) -> str | None:
        """Why the row is flagged, in words; ``None`` when it is not."""
        parts = []
        for name, stats in (("treatment", self.treatment), ("control", self.control)):
            aside = stats.set_aside
            if aside is None:
                continue
            its = "its" if aside.cells == 1 else "their"
            cells = "1 cell" if aside.cells == 1 else f"{aside.cells} cells"
            beyond = ", ".join(f"{n:,} {o}" for o, n in aside.unmatched.items() if n)
            what = beyond or f"{its} value sums"
            parts.append(
                f"{name}: {cells} set aside, {what} beyond {its} {aside.decisions:,} decisions"
            )
        if not parts:
            return None
        return (
            "; ".join(parts) + ". Responses without a matching decision: the decision log is "
            "behind (measured again once the decisions are counted), or responses named an "
            "action their decision did not choose. Left out of rates, uplift and verdicts."
        )

    def sort_key(self) -> tuple[bool, float, str]:
        """Largest primary uplift first; rows without one last; ties by name."""
        absolute = self.outcome(self.primary_outcome).absolute
        return (absolute is None, -(absolute.estimate if absolute else 0.0), self.label)

    def to_dict(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "channel": self.channel,
            "action_id": self.action_id,
            "campaign": self.campaign,
            "actions": list(self.actions),
            "reach": self.reach,
            "treatment": self.treatment.to_dict(),
            "control": self.control.to_dict(),
            "uplift": {u.outcome: u.to_dict() for u in self.uplifts},
            "value_uplift": _interval_dict(self.value),
            "value_verdict": self.value_verdict,
            "verdict": self.verdict,
            "flagged": self.flagged,
            "note": self.note,
        }


@dataclass(frozen=True, slots=True)
class UpliftReport:
    """The three tables, each sorted by channel, then by primary uplift (largest first)."""

    confidence: float
    primary_outcome: str
    actions: tuple[UpliftRow, ...]
    campaigns: tuple[UpliftRow, ...]
    channels: tuple[UpliftRow, ...]
    generated_at: str | None = None

    def channel_names(self) -> list[str]:
        return [row.channel for row in self.channels]

    def rows(self, level: str, channel: str) -> list[UpliftRow]:
        table = {"action": self.actions, "campaign": self.campaigns, "channel": self.channels}
        return [row for row in table[level] if row.channel == channel]

    def to_dict(self) -> dict[str, Any]:
        return {
            "generated_at": self.generated_at,
            "confidence": self.confidence,
            "primary_outcome": self.primary_outcome,
            "outcomes": list(OUTCOMES),
            "methods": dict(METHODS),
            "actions": [row.to_dict() for row in self.actions],
            "campaigns": [row.to_dict() for row in self.campaigns],
            "channels": [row.to_dict() for row in self.channels],
        }

    def to_json(self) -> str:
        return orjson.dumps(self.to_dict(), option=orjson.OPT_INDENT_2).decode()


_Key = tuple[str, str, str]  # (level, channel, name)


def _row(
    key: _Key,
    groups: Mapping[str, _Tally],
    members: Iterable[str],
    campaign: str | None,
    z: float,
    primary: str,
) -> UpliftRow:
    level, channel, _ = key
    treated = groups.get("treatment", _Tally()).freeze()
    held = groups.get("control", _Tally()).freeze()
    uplifts = []
    for outcome in OUTCOMES:
        absolute = relative = None
        if treated.decisions and held.decisions:
            x1, x2 = treated.responders[outcome], held.responders[outcome]
            absolute = newcombe_difference(x1, treated.decisions, x2, held.decisions, z)
            ratio = katz_ratio(x1, treated.decisions, x2, held.decisions, z)
            relative = ratio.shifted(-1.0) if ratio else None
        uplifts.append(OutcomeUplift(outcome, absolute, relative, verdict(absolute)))
    value = welch_difference(
        treated.decisions,
        treated.value_sum,
        treated.value_sum_sq,
        held.decisions,
        held.value_sum,
        held.value_sum_sq,
        z,
    )
    return UpliftRow(
        level=level,
        channel=channel,
        action_id=key[2] if level == "action" else None,
        campaign=campaign,
        actions=tuple(sorted(members)),
        treatment=treated,
        control=held,
        uplifts=tuple(uplifts),
        value=value,
        value_verdict=verdict(value),
        primary_outcome=primary,
    )


def build_report(
    cells: Iterable[ArmCounts],
    confidence: float = 0.95,
    primary_outcome: str = "click",
    generated_at: str | None = None,
) -> UpliftReport:
    """The report from the counter cells, in one pass over them.

    Cells with the same (action, channel, group) are added up; they must name the same campaign.
    A bad cell raises :class:`CountsError` naming the field. The added-up cell, if it is ahead
    of its decisions, is set aside (see the module's docstring). A row with no decisions in one
    group still shows the other group's rates, with every uplift and verdict ``None``.
    """
    if primary_outcome not in OUTCOMES:
        raise ValueError(f"primary_outcome must be one of {OUTCOMES}, got {primary_outcome!r}")
    z = z_value(confidence)
    merged: dict[tuple[str, str, str], _Tally] = {}  # (action, channel, group): its shards
    campaigns: dict[tuple[str, str], str | None] = {}
    for cell in cells:
        check_counts(cell)
        pair = (cell.action_id, cell.channel)
        if campaigns.setdefault(pair, cell.campaign) != cell.campaign:
            raise CountsError(
                f"action {cell.action_id!r} on {cell.channel!r} names two campaigns: "
                f"{campaigns[pair]!r} and {cell.campaign!r}",
                "campaign",
            )
        merged.setdefault((cell.action_id, cell.channel, cell.group), _Tally()).add(cell)
    tallies: dict[_Key, dict[str, _Tally]] = {}
    members: dict[_Key, set[str]] = {}
    for (action_id, channel, group), counts in merged.items():
        campaign = campaigns[(action_id, channel)]
        keys: list[_Key] = [("action", channel, action_id), ("channel", channel, "")]
        if campaign is not None:
            keys.append(("campaign", channel, campaign))
        unmatched = _unmatched(counts)
        for key in keys:
            tally = tallies.setdefault(key, {}).setdefault(group, _Tally())
            if unmatched is None:
                tally.add(counts)
            else:
                tally.set_aside(counts, unmatched)
            members.setdefault(key, set()).add(action_id)
    rows: dict[str, list[UpliftRow]] = {"action": [], "campaign": [], "channel": []}
    for key, groups in tallies.items():
        level, channel, name = key
        campaign = {"action": campaigns.get((name, channel)), "campaign": name}.get(level)
        rows[level].append(_row(key, groups, members[key], campaign, z, primary_outcome))
    for table in rows.values():
        table.sort(key=lambda row: (row.channel, *row.sort_key()))
    return UpliftReport(
        confidence=confidence,
        primary_outcome=primary_outcome,
        actions=tuple(rows["action"]),
        campaigns=tuple(rows["campaign"]),
        channels=tuple(rows["channel"]),
        generated_at=generated_at,
    )
