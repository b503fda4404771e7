"""The uplift report's renderings (a forest plot, a self-contained HTML page) and
``nba report uplift``."""

from __future__ import annotations

import html
import io
import struct
from dataclasses import replace
from pathlib import Path

import orjson
import pytest

from models.uplift import UpliftReport, build_report
from models.uplift_report import render_html, render_png
from nba.report import run_report_uplift, summary_lines
from tests.models.test_uplift import CLICK, cell, simulate

WEIRD = '<script>alert("x")</script>'


def demo_report() -> UpliftReport:
    cells = [
        *simulate(1, CLICK),
        *[
            replace(c, action_id="flat-banner", campaign="sale & more")
            for c in simulate(2, {"treatment": 0.05, "control": 0.05})
        ],
        *[
            replace(c, action_id="bad-offer", channel="email")
            for c in simulate(3, {"treatment": 0.03, "control": 0.05})
        ],
        cell("treatment", 500, 20, action=WEIRD, channel="email", campaign=WEIRD),
    ]
    return build_report(cells, generated_at="2026-11-24T10:00:00Z")


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_png_is_a_forest_plot_with_a_row_per_action(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    report = demo_report()
    data = render_png(report, tmp_path / "uplift.png")
    assert (tmp_path / "uplift.png").read_bytes() == data
    width, height = png_size(data)
    assert width > 600
    bigger = build_report(
        [
            *simulate(1, CLICK),
            *[replace(c, action_id=f"x{i}") for i in range(12) for c in simulate(i, CLICK)],
        ]
    )
    assert png_size(render_png(bigger))[1] > height  # taller with more rows
    assert png_size(render_png(build_report([])))[0] > 0  # an empty report still draws


def test_html_is_self_contained_escaped_and_sorted() -> None:
    report = demo_report()
    page = render_html(report, png=b"\x89PNG\r\n\x1a\nfake")
    for row in report.actions:
        assert row.action_id is not None
        assert html.escape(row.action_id) in page
    assert "<script" not in page.lower()
    assert "&lt;script&gt;" in page
    assert "sale &amp; more" in page
    assert 'src="http' not in page and "<link" not in page and "url(" not in page
    assert "data:image/png;base64," in page
    assert page.index("Channel email") < page.index("Channel web")
    web = page[page.index("Channel web") :]
    assert web.index(">a<") < web.index(">flat-banner (campaign")  # largest uplift first
    assert "Winner: raises the click rate" in page
    assert "Loser: lowers the click rate" in page
    assert "Not measurable: no control decisions yet" in page
    assert "2026-11-24T10:00:00Z" in page
    assert "data:image" not in render_html(report)


def test_run_report_uplift_writes_three_files_and_a_summary(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    flat = simulate(2, {"treatment": 0.05, "control": 0.05})
    cells = [*simulate(1, CLICK), *[replace(c, action_id="flat") for c in flat]]
    out = io.StringIO()
    assert run_report_uplift(cells, tmp_path / "out", stream=out) == 0
    data = orjson.loads((tmp_path / "out" / "uplift.json").read_text())
    assert data["actions"][0]["action_id"] == "a" and data["generated_at"]
    png_size((tmp_path / "out" / "uplift.png").read_bytes())
    assert "data:image/png;base64," in (tmp_path / "out" / "uplift.html").read_text()
    printed = out.getvalue()
    assert "channel web" in printed and "winner" in printed and "wrote uplift.json" in printed
    assert summary_lines(build_report([])) == ["uplift: no decisions counted yet"]


def test_a_cell_ahead_of_its_decisions_is_flagged_in_every_rendering(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    cells = [*simulate(1, CLICK), cell("treatment", 0, 1, action="no-such-action")]
    out = io.StringIO()
    assert run_report_uplift(cells, tmp_path, stream=out) == 0
    data = orjson.loads((tmp_path / "uplift.json").read_text())
    row = next(r for r in data["actions"] if r["action_id"] == "no-such-action")
    assert row["flagged"] and row["treatment"]["set_aside"]["unmatched"]["click"] == 1
    assert data["channels"][0]["flagged"]
    page = (tmp_path / "uplift.html").read_text()
    assert "Not measurable: its treatment cell counts more responses than decisions" in page
    assert page.count('<tr class="flagged">') == 1 and "1 click beyond its 0 decisions" in page
    png_size((tmp_path / "uplift.png").read_bytes())
    assert "no-such-action               flagged, left out: treatment" in out.getvalue()
    assert capsys.readouterr().err == ""


def test_corrupt_counts_are_refused_in_one_line_with_exit_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_report_uplift([cell("treatment", -3, 0)], tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "decisions must be an integer >= 0" in err
    assert "Traceback" not in err and not (tmp_path / "out").exists()
