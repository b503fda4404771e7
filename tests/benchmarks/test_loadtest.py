"""``nba loadtest`` end to end: real Locust against the real API, at a low rate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nba.load_measures import worker_backlog
from nba.loadtest import run_loadtest
from streams.worker import WORKER_TOPICS, reading_groups
from tests.conftest import KEYS, Running
from tests.reliability._support import produce

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ADMIN_KEY = next(key for key, scopes in KEYS.items() if "admin" in scopes)


def test_loadtest_writes_its_report_and_chart(running: Running, tmp_path: Path) -> None:
    # 100 web decisions/s for 20 s. Arrivals are Poisson: at its default of a batch per
    # 1,000 page views the e-mail class sent none in 20 s about one run in seven (e^-2),
    # so it is offered 0.5 batches/s here (none: e^-10)
    code = run_loadtest(
        100.0,
        20.0,
        1,
        tmp_path,
        url=running.base_url,
        api_key=ADMIN_KEY,
        warmup=2.0,
        caller_rates={"email": 0.5},
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
    batches = report["server"]["page_view_batches"]
    assert 0 < batches["batch_size"]["batches"] <= server["count"]
    assert batches["batch_size"]["mean"] >= 1
    for phase in ("forming", "read", "ranking"):
        assert batches["phases"][phase]["count"] == batches["batch_size"]["batches"], phase
        assert 0 < batches["phases"][phase]["mean_ms"] < server["p99_ms"] * 10, phase
    assert report["machine"]["cpu_count"] >= 1 and report["machine"]["python"]
    waiting = report["cpu"]["waiting_for_a_cpu"]["per_process"]
    assert set(waiting) <= set(report["cpu"]["per_process"]) and "locust" in waiting

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


def test_the_worker_backlog_counts_what_a_group_has_not_committed(running: Running) -> None:
    """The session's worker keeps up: caught up at once. A group that never read the
    same topics is behind by every event in them, and never catches up."""
    brokers = running.endpoints.kafka_brokers
    topics = {name: f"it.{name}" for name in WORKER_TOPICS}
    produce(brokers, "it.crm", [(b"nobody", b"not an event: dead-lettered")])
    kept_up = worker_backlog(brokers, reading_groups("it."), topics, timeout_s=30.0)
    assert kept_up["caught_up_in_s"] is not None and kept_up["caught_up_in_s"] < 30.0
    assert set(kept_up["by_topic"]) == set(WORKER_TOPICS)
    idle = worker_backlog(brokers, "a-group-that-never-read", topics, timeout_s=0.5)
    assert idle["events_behind"] > 0 and idle["caught_up_in_s"] is None
    assert idle["events_behind"] == sum(idle["by_topic"].values())
