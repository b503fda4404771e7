"""``nba loadtest`` end to end: real Locust against the real API, at a low rate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nba.loadtest import run_loadtest
from tests.conftest import KEYS, Running

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ADMIN_KEY = next(key for key, scopes in KEYS.items() if "admin" in scopes)


def test_loadtest_writes_its_report_and_chart(running: Running, tmp_path: Path) -> None:
    # 100 web decisions/s for 20 s: the e-mail class (a batch per 1,000 page views)
    # then sends two batches
    code = run_loadtest(
        100.0, 20.0, 1, tmp_path, url=running.base_url, api_key=ADMIN_KEY, warmup=2.0
    )

    reports = list(tmp_path.glob("*-loadtest.json"))
    assert len(reports) == 1, list(tmp_path.iterdir())
    report = json.loads(reports[0].read_text())
    client = report["client"]
    assert client["failure_messages"] == [], client["failure_messages"]
    assert code == 0
    assert client["all"]["failures"] == 0 and client["all"]["failures_during_warmup"] == 0
    classes = client["classes"]
    assert set(classes) == {"web", "desk", "email", "responses"}
    web = classes["web"]
    assert web["offered_rate"] == 100.0
    assert web["requests"] > 800  # 100/s for about 20 s
    assert 0.6 * 100.0 < web["achieved_rate"] < 1.4 * 100.0
    assert 0 < web["p50_ms"] <= web["p95_ms"] <= web["p99_ms"] <= web["max_ms"]
    assert classes["desk"]["endpoints"]["desk: GET /v1/customers/{id}"]["requests"] > 0
    assert classes["email"]["requests"] >= 1
    assert classes["responses"]["requests"] > 0
    server = report["server"]["decision_latency"]["all"]
    assert server["count"] > 0 and server["p50_ms"] is not None and server["p99_ms"] is not None
    assert report["machine"]["cpu_count"] >= 1 and report["machine"]["python"]

    png = tmp_path / report["files"]["png"]
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    results = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
    assert not (results / reports[0].name).exists()


def test_the_command_line_sets_or_leaves_out_the_other_callers() -> None:
    from nba.cli import parser

    args = parser().parse_args(
        ["loadtest", "--rate", "5", "--caller", "desk=0", "--caller", "email=0.5"]
    )
    assert dict(args.caller) == {"desk": 0.0, "email": 0.5}
    for wrong in ("fax=1", "desk", "desk=-1", "desk=x", "web=3"):
        with pytest.raises(SystemExit):
            parser().parse_args(["loadtest", "--caller", wrong])
