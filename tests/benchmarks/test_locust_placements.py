"""The load test's page views ask for the placements named in NBA_LOADTEST_WEB_PLACEMENTS
(a catalogue with fewer placements, such as benchmarks/world_100.py's, can be served)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
SHOW = "import locustfile; print([p for p, _, _ in locustfile.WEB_PLACEMENTS])"


def _placements(value: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "NBA_LOADTEST_WEB_PLACEMENTS"}
    if value is not None:
        env["NBA_LOADTEST_WEB_PLACEMENTS"] = value
    return subprocess.run(
        [sys.executable, "-c", SHOW],
        cwd=BENCHMARKS,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_unset_means_every_web_placement() -> None:
    shown = _placements(None)
    assert shown.returncode == 0, shown.stderr
    expected = "['home_hero', 'product_sidebar', 'search_results', 'checkout_cross_sell']"
    assert shown.stdout.strip() == expected


def test_named_placements_only_in_the_order_given() -> None:
    shown = _placements(" search_results, home_hero,search_results ")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == "['search_results', 'home_hero']"


def test_an_unknown_placement_is_refused_by_name() -> None:
    shown = _placements("home_hero,front_door")
    assert shown.returncode != 0
    assert "NBA_LOADTEST_WEB_PLACEMENTS" in shown.stderr and "front_door" in shown.stderr
