"""``nba report uplift``: the uplift report from the counter cells, written as files.

:func:`run_report_uplift` writes ``uplift.json`` (the report's JSON, as the API serves it),
``uplift.png`` (the forest plot) and ``uplift.html`` (the page with the plot embedded) to the
output folder, and prints a few lines: per channel the overall uplift, then the winners and
losers among the actions, and the actions flagged for counting more responses than decisions.
Counters that cannot be right are refused in one line on stderr, exit code 2.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from models.uplift import ArmCounts, CountsError, UpliftReport, UpliftRow, build_report
from models.uplift_report import render_html, render_png

__all__ = ["run_report_uplift", "summary_lines"]


def _line(row: UpliftRow, outcome: str) -> str:
    uplift = row.outcome(outcome).absolute
    if uplift is None:
        return f"{row.label:<28} reach {row.reach:>9,}  not measurable"
    verdict = row.verdict or "no clear difference"
    return (
        f"{row.label:<28} reach {row.reach:>9,}  {outcome} uplift {uplift.estimate * 100:+.2f} pp "
        f"({uplift.low * 100:+.2f} to {uplift.high * 100:+.2f})  {verdict}"
    )


def summary_lines(report: UpliftReport) -> list[str]:
    """The printed summary: each channel overall, then its actions with a verdict."""
    outcome = report.primary_outcome
    if not report.channels:
        return ["uplift: no decisions counted yet"]
    lines = []
    for channel in report.channels:
        lines.append(f"channel {_line(channel, outcome)}")
        rows = report.rows("action", channel.channel)
        lines.extend(f"  {_line(row, outcome)}" for row in rows if row.verdict is not None)
        lines.extend(
            f"  {row.label:<28} flagged, left out: {(row.note or '').split('. ')[0]}"
            for row in rows
            if row.flagged
        )
    return lines


def utc_stamp() -> str:
    """Now, to the second, as the reports print it (``2026-12-07T04:40:00Z``)."""
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def run_report_uplift(cells: list[ArmCounts], out_dir: Path, stream: TextIO | None = None) -> int:
    """Write uplift.json, uplift.png and uplift.html to ``out_dir``; 0 on success, 2 (and
    one line on stderr) when the counters cannot be right."""
    out = stream or sys.stdout
    try:
        report = build_report(cells, generated_at=utc_stamp())
    except CountsError as exc:
        print(f"nba report uplift: the uplift counters cannot be used: {exc}", file=sys.stderr)
        return 2
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "uplift.json").write_text(report.to_json() + "\n", encoding="utf-8")
    png = render_png(report, out_dir / "uplift.png")
    (out_dir / "uplift.html").write_text(render_html(report, png), encoding="utf-8")
    for line in summary_lines(report):
        print(line, file=out)
    print(f"wrote uplift.json, uplift.png, uplift.html to {out_dir}", file=out)
    return 0
