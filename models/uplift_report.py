"""The uplift report for people: a forest plot (PNG) and a self-contained HTML page.

:func:`render_png` draws one row per action and channel: the uplift of the primary outcome's
rate in percentage points with its 95% interval, coloured by verdict. :func:`render_html` writes
a page a marketer reads without any other file: per channel, the channel's overall result in a
sentence, then the actions and the campaigns sorted by uplift, with intervals, verdicts in words
and reach. A row flagged for counting more responses than decisions (see :mod:`models.uplift`)
carries its note under it in the page and "(flagged)" in the plot. Every piece of text from the
data is HTML-escaped; the page loads nothing and runs no script. matplotlib is imported only
when a PNG is drawn.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

from models.uplift import OUTCOMES, UpliftReport, UpliftRow
from models.uplift_stats import Interval

__all__ = ["render_html", "render_png"]

COLOURS = {"winner": "#1a7f37", "loser": "#cf222e", None: "#6e7781"}
ROW_INCHES = 0.32


def _points(value: float) -> str:
    return f"{value * 100:+.2f}"


def _interval_points(interval: Interval) -> str:
    return f"{_points(interval.estimate)} pp ({_points(interval.low)} to {_points(interval.high)})"


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.2f}%"


def _relative(interval: Interval | None) -> str:
    if interval is None:
        return "–"
    return (
        f"{interval.estimate * 100:+.0f}% "
        f"({interval.low * 100:+.0f}% to {interval.high * 100:+.0f}%)"
    )


def _money(interval: Interval | None) -> str:
    if interval is None:
        return "–"
    return f"{interval.estimate:+.2f} ({interval.low:+.2f} to {interval.high:+.2f})"


def _missing(row: UpliftRow) -> str:
    """Why a row has no uplift: a group without measured decisions, and why it has none."""
    for name, stats in (("treatment", row.treatment), ("control", row.control)):
        if stats.decisions == 0 and stats.set_aside is not None:
            return f"its {name} cell counts more responses than decisions"
    missing = "control" if row.control.decisions == 0 else "treatment"
    return f"no {missing} decisions yet"


def _verdict_words(row: UpliftRow, outcome: str) -> str:
    uplift = row.outcome(outcome)
    if uplift.absolute is None:
        return f"Not measurable: {_missing(row)}"
    if uplift.verdict == "winner":
        return f"Winner: raises the {outcome} rate"
    if uplift.verdict == "loser":
        return f"Loser: lowers the {outcome} rate"
    return "No clear difference yet"


def render_png(report: UpliftReport, path: Path | str | None = None) -> bytes:
    """A forest plot of the primary outcome's uplift; written to ``path`` if given, returned."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    rows = list(report.actions)
    outcome = report.primary_outcome
    figure = Figure(figsize=(9.0, 1.9 + ROW_INCHES * max(len(rows), 3)), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    title = (
        f"{outcome.capitalize()} rate uplift, treatment − control, {report.confidence:.0%} interval"
    )
    axes.set_title(title, fontsize=10, loc="left")
    if not rows:
        axes.text(0.5, 0.5, "No decisions counted yet", ha="center", va="center", fontsize=12)
        axes.set_axis_off()
    else:
        labels = []
        for y, row in enumerate(rows):
            flag = " (flagged)" if row.flagged else ""
            labels.append(f"{row.channel} · {row.action_id}{flag}")
            uplift = row.outcome(outcome)
            colour = COLOURS[uplift.verdict]
            if uplift.absolute is None:
                note = f"  not measurable: {_missing(row)}"
                axes.text(0.0, y, note, va="center", fontsize=8, color=colour)
                continue
            a = uplift.absolute
            estimate, low, high = 100 * a.estimate, 100 * a.low, 100 * a.high
            axes.plot([low, high], [y, y], color=colour, linewidth=2.2, solid_capstyle="butt")
            axes.plot([estimate], [y], marker="o", color=colour, markersize=6)
        axes.axvline(0.0, color="#24292f", linewidth=0.8)
        for y in range(1, len(rows)):  # a rule between channels
            if rows[y].channel != rows[y - 1].channel:
                axes.axhline(y - 0.5, color="#d0d7de", linewidth=0.8)
        axes.set_yticks(range(len(rows)), labels, fontsize=8)
        axes.set_ylim(len(rows) - 0.5, -0.5)
        axes.set_xlabel(f"{outcome} rate uplift (percentage points)")
        axes.grid(axis="x", color="#eaeef2", linewidth=0.6)
        axes.set_axisbelow(True)
        reach = axes.secondary_yaxis("right")
        reach.set_yticks(range(len(rows)), [f"reach {row.reach:,}" for row in rows], fontsize=7)
        reach.tick_params(length=0)
        handles = [
            Line2D([], [], color=COLOURS["winner"], marker="o", label="winner"),
            Line2D([], [], color=COLOURS[None], marker="o", label="no clear difference"),
            Line2D([], [], color=COLOURS["loser"], marker="o", label="loser"),
        ]
        figure.legend(handles=handles, loc="lower center", ncol=3, fontsize=8, frameon=False)
    legend_inches = 0.35 if rows else 0.0
    figure.tight_layout(rect=(0.0, legend_inches / figure.get_figheight(), 1.0, 1.0))
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    data = buffer.getvalue()
    if path is not None:
        Path(path).write_bytes(data)
    return data


STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:72rem;
color:#24292f;line-height:1.4;padding:0 1rem}
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #d0d7de}
h3{font-size:1rem;margin-bottom:.3rem}
table{border-collapse:collapse;width:100%;font-size:.85rem;margin-bottom:1rem}
th,td{padding:.3rem .5rem;border-bottom:1px solid #eaeef2;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.winner td.verdict{color:#1a7f37;font-weight:600}tr.loser td.verdict{color:#cf222e;
font-weight:600}td.verdict{color:#57606a}.small{color:#57606a;font-size:.8rem}
tr.flagged td{background:#fff8c5;color:#4d2d00;font-size:.8rem}
img{max-width:100%;border:1px solid #d0d7de}
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _table(rows: list[UpliftRow], first: str, outcome: str) -> str:
    others = [o for o in OUTCOMES if o != outcome]
    head = [
        first,
        "Reach",
        "Decisions (treatment / control)",
        f"{outcome.capitalize()} rate (treatment / control)",
        "Uplift, 95% interval",
        "Relative uplift",
        "Verdict",
        *[f"{o.capitalize()} uplift" for o in others],
        "Value per decision uplift",
    ]
    out = ["<table><thead><tr>", *[f"<th>{_e(h)}</th>" for h in head], "</tr></thead><tbody>"]
    for row in rows:
        uplift = row.outcome(outcome)
        name = row.action_id if row.level == "action" else row.campaign
        if row.level == "action" and row.campaign:
            name = f"{row.action_id} (campaign {row.campaign})"
        elif row.level == "campaign":
            name = f"{row.campaign}: {', '.join(row.actions)}"
        cells = [
            (name, "name"),
            (f"{row.reach:,}", "num"),
            (f"{row.treatment.decisions:,} / {row.control.decisions:,}", "num"),
            (
                f"{_percent(row.treatment.rate(outcome))} / {_percent(row.control.rate(outcome))}",
                "num",
            ),
            (_interval_points(uplift.absolute) if uplift.absolute else "–", "num"),
            (_relative(uplift.relative), "num"),
            (_verdict_words(row, outcome), "verdict"),
            *[(_other(row, o), "num") for o in others],
            (_money(row.value), "num"),
        ]
        out.append(f'<tr class="{_e(uplift.verdict or "none")}">')
        out.extend(f'<td class="{klass}">{_e(text)}</td>' for text, klass in cells)
        out.append("</tr>")
        if row.note is not None:
            out.append(
                f'<tr class="flagged"><td colspan="{len(head)}">Flagged: {_e(row.note)}</td></tr>'
            )
    out.append("</tbody></table>")
    return "".join(out)


def _other(row: UpliftRow, outcome: str) -> str:
    uplift = row.outcome(outcome)
    if uplift.absolute is None:
        return "–"
    mark = {"winner": " ▲ winner", "loser": " ▼ loser"}.get(uplift.verdict or "", "")
    return _interval_points(uplift.absolute) + mark


def _summary(row: UpliftRow, outcome: str, confidence: float) -> str:
    flag = "" if row.note is None else f" Flagged: {row.note}"
    uplift = row.outcome(outcome)
    if uplift.absolute is None:
        return f"{_verdict_words(row, outcome)}. Reach {row.reach:,} decisions.{flag}"
    a = uplift.absolute
    verdict = {
        "winner": "the engine's choices do better than chance",
        "loser": "the engine's choices do worse than chance",
    }.get(uplift.verdict or "", "no clear difference from chance yet")
    return (
        f"Over all actions, the {outcome} rate is {_percent(row.treatment.rate(outcome))} "
        f"when the engine chooses and {_percent(row.control.rate(outcome))} in the control group "
        f"(random eligible actions): {_points(a.estimate)} percentage points, "
        f"{confidence:.0%} interval {_points(a.low)} to {_points(a.high)}: {verdict}. "
        f"Reach {row.reach:,} decisions.{flag}"
    )


def render_html(report: UpliftReport, png: bytes | None = None) -> str:
    """A self-contained page; ``png`` (from :func:`render_png`) is embedded as a data: URI."""
    outcome = report.primary_outcome
    parts = [
        '<!doctype html><html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        f"<title>Uplift report</title><style>{STYLE}</style></head><body>",
        "<h1>Uplift against the control group</h1>",
        "<p>Each channel keeps a random hold-out of customers (the control group) who get a "
        "random eligible action instead of the engine's choice. An action's uplift is its "
        f"{_e(outcome)} rate when the engine chose it minus its rate when chance chose it, in "
        "percentage points. A verdict is given only when the "
        f"{_e(f'{report.confidence:.0%}')} interval lies wholly above zero (winner) or below "
        "it (loser).</p>",
    ]
    if report.generated_at:
        parts.append(f'<p class="small">Generated {_e(report.generated_at)}.</p>')
    if png is not None:
        uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
        parts.append(f'<p><img alt="Forest plot of uplift per action" src="{uri}"></p>')
    if not report.channels:
        parts.append("<p>No decisions have been counted yet.</p>")
    for channel_row in report.channels:
        channel = channel_row.channel
        parts.append(f"<h2>Channel {_e(channel)}</h2>")
        parts.append(f"<p>{_e(_summary(channel_row, outcome, report.confidence))}</p>")
        parts.append("<h3>Actions, largest uplift first</h3>")
        parts.append(_table(report.rows("action", channel), "Action", outcome))
        campaigns = report.rows("campaign", channel)
        if campaigns:
            parts.append("<h3>Campaigns</h3>")
            parts.append(_table(campaigns, "Campaign: actions", outcome))
    parts.append(
        '<p class="small">Methods: absolute uplift, Newcombe hybrid score interval (method 10, '
        "from Wilson intervals); relative uplift, Katz log interval of the rate ratio minus one "
        "(shown only when both groups have responders); value per decision, Welch normal "
        "interval. Each verdict is a separate test: among many actions with no real effect, "
        "about one in forty is called a winner by chance. A cell (action, channel, group) that "
        "counts more responses than decisions (responses counted before their decision, or "
        "naming an action their decision did not choose) is left out of every rate, uplift and "
        "verdict, and the rows it belongs to are flagged with its counts.</p></body></html>"
    )
    return "\n".join(parts)
