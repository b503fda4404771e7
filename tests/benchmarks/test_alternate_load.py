"""The alternated load tests' helpers (benchmarks/alternate_load.py): the figures read
from a result file, and the old side's files renamed beside the new side's."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.alternate_load import as_base, figures


def test_figures_are_read_where_the_load_test_writes_them() -> None:
    result = {
        "server": {"decision_latency": {"all": {"p50_ms": 0.54, "p99_ms": 2.1}}},
        "client": {"classes": {"web": {"p50_ms": 1.5, "p99_ms": 5.4, "achieved_rate": 989}}},
        "cpu": {"per_process": {"api": 59.8}},
    }
    assert figures(result) == {
        "server p50 ms": 0.54,
        "server p99 ms": 2.1,
        "web p50 ms": 1.5,
        "web p99 ms": 5.4,
        "web decisions/s": 989.0,
        "api cpu %": 59.8,
    }


def test_a_figure_the_result_lacks_is_none() -> None:
    read = figures({"server": {"decision_latency": {"all": {"p50_ms": None}}}, "cpu": []})
    assert read["server p50 ms"] is None and read["api cpu %"] is None


def test_the_old_sides_files_are_renamed_together(tmp_path: Path) -> None:
    result = tmp_path / "20261207T185733Z-loadtest.json"
    result.write_text(json.dumps({"kind": "nba loadtest"}))
    result.with_suffix(".png").write_bytes(b"png")
    renamed = as_base(result, "34aaf9ee20e43440814269f0ed221d2f05d09110")
    assert renamed.name == "20261207T185733Z-loadtest-base-34aaf9e.json"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "20261207T185733Z-loadtest-base-34aaf9e.json",
        "20261207T185733Z-loadtest-base-34aaf9e.png",
    ]
    assert json.loads(renamed.read_text()) == {"kind": "nba loadtest"}
