"""Uplift counts: a cell that cannot be right is refused naming its field; a cell ahead of its
decisions is reported, flagged and set aside (the report's maths: test_uplift.py)."""

from __future__ import annotations

import math

import orjson
import pytest

from models.uplift import ArmCounts, CountsError, build_report
from tests.models.test_uplift import cell, pair

# --- cells that cannot be right ---------------------------------------------------------------

BAD_CELLS = [
    (cell(decisions=-1, click=0), "decisions"),
    (cell(decisions=True, click=0), "decisions"),  # type: ignore[arg-type]
    (cell(decisions=10, click=-1), "responders"),
    (cell(decisions=10, click=1, accept=2.5), "responders"),  # type: ignore[arg-type]
    (cell(decisions=10, click=1, purchase=1), "responders"),
    (cell(group="holdout"), "group"),
    (cell(action=""), "action_id"),
    (cell(channel=None), "channel"),  # type: ignore[arg-type]
    (cell(campaign=3), "campaign"),  # type: ignore[arg-type]
    (cell(value_sum=math.nan), "value_sum"),
    (cell(value_sum=math.inf, value_sum_sq=math.inf), "value_sum"),
    (cell(value_sum=1.0, value_sum_sq=-1.0), "value_sum_sq"),
    (cell(value_sum=5.0, value_sum_sq=0.0), "value_sum_sq"),  # no number of decisions fits
]


@pytest.mark.parametrize(("bad", "field"), BAD_CELLS)
def test_a_bad_cell_is_refused_naming_its_field(bad: ArmCounts, field: str) -> None:
    with pytest.raises(CountsError) as caught:
        build_report([cell("control"), bad])
    assert caught.value.field == field


def test_two_campaigns_for_one_action_are_refused() -> None:
    with pytest.raises(CountsError, match="two campaigns"):
        build_report([cell("treatment", campaign="x"), cell("control", campaign="y")])


# --- counts ahead of their decisions ----------------------------------------------------------

# A cell whose responses cannot all belong to the decisions it counts: the decision log is
# behind the responses, or a response named an action its decision did not choose.
# (name, the cell of action "b", the responders it counts beyond its decisions)
AHEAD = [
    ("a response to an action never chosen", cell("treatment", 0, 1, action="b"), {"click": 1}),
    ("more clicks than decisions", cell("treatment", 10, 11, action="b"), {"click": 1}),
    ("more accepts than decisions", cell("control", 3, 0, action="b", accept=5), {"accept": 2}),
    (
        "a value with no decisions",
        cell("treatment", 0, 0, action="b", value_sum=5.0, value_sum_sq=25.0),
        {},
    ),
    (
        "value sums that need more decisions",
        cell("control", 10, 1, action="b", value_sum=10.0, value_sum_sq=5.0),
        {},
    ),
]


@pytest.mark.parametrize(("name", "ahead", "unmatched"), AHEAD, ids=[r[0] for r in AHEAD])
def test_a_cell_ahead_of_its_decisions_is_reported_flagged_and_set_aside(
    name: str, ahead: ArmCounts, unmatched: dict[str, int]
) -> None:
    other = "control" if ahead.group == "treatment" else "treatment"
    measured = [*pair((1000, 60), (1000, 40)), cell(other, 500, 20, action="b")]
    report = build_report([*measured, ahead])
    data = orjson.loads(report.to_json())  # valid JSON, no NaN or infinity
    row = next(r for r in report.actions if r.action_id == "b")
    group = row.treatment if ahead.group == "treatment" else row.control
    assert row.flagged and row.note is not None and ahead.group in row.note
    assert group.decisions == 0 and group.rate("click") is None  # left out of the rates
    assert group.set_aside is not None
    assert (group.set_aside.cells, group.set_aside.decisions) == (1, ahead.decisions)
    assert group.set_aside.responders["click"] == ahead.responders["click"]
    assert group.set_aside.unmatched == {
        **dict.fromkeys(("click", "accept", "convert"), 0),
        **unmatched,
    }
    assert row.outcome("click").absolute is None and row.verdict is None and row.value is None
    # the channel row is flagged, and its numbers are those of the measured cells alone
    web = report.rows("channel", "web")[0]
    clean = build_report(measured).rows("channel", "web")[0]
    assert web.flagged and not clean.flagged and "b" in web.actions
    assert (web.treatment.decisions, web.control.decisions) == (
        clean.treatment.decisions,
        clean.control.decisions,
    )
    assert web.treatment.responders == clean.treatment.responders
    assert web.outcome("click").absolute == clean.outcome("click").absolute
    # the action that is not ahead is untouched
    a = next(r for r in report.actions if r.action_id == "a")
    assert not a.flagged and a.note is None and a.verdict == "winner"
    json_row = next(r for r in data["actions"] if r["action_id"] == "b")
    assert json_row["flagged"] is True and json_row["note"] == row.note
    aside = json_row[ahead.group]["set_aside"]
    assert aside["decisions"] == ahead.decisions and aside["unmatched"] == group.set_aside.unmatched
    assert (
        data["actions"][0]["flagged"] is False
        and data["actions"][0]["treatment"]["set_aside"] is None
    )
    assert "set_aside" in data["methods"]


def test_a_response_to_an_action_never_chosen_is_reported_not_refused() -> None:
    """The audit's case: 0 decisions and 1 click in (no-such-action, web, treatment)."""
    report = build_report(
        [*pair((100, 5), (100, 4)), cell("treatment", 0, 1, action="no-such-action")]
    )
    row = next(r for r in report.actions if r.action_id == "no-such-action")
    assert row.flagged and row.reach == 0
    assert row.treatment.set_aside is not None and row.treatment.set_aside.unmatched["click"] == 1
    assert row.note is not None and "1 click" in row.note
    assert [r.action_id for r in report.actions] == ["a", "no-such-action"]  # measurable first


def test_counts_of_outcomes_the_report_does_not_measure_never_set_a_cell_aside() -> None:
    row = build_report(
        [cell("treatment", 10, 1, impression=25, decline=12), cell("control")]
    ).actions[0]
    assert not row.flagged and row.treatment.decisions == 10


def test_shards_of_one_counter_are_added_up_before_they_are_judged() -> None:
    shards = [cell("treatment", 100, 0), cell("treatment", 0, 7), cell("control", 100, 3)]
    row = build_report(shards).actions[0]
    assert not row.flagged
    assert (row.treatment.decisions, row.treatment.responders["click"]) == (100, 7)
