"""The stream workers' figures on ``/metrics``: the age of each worker's last report,
worked out at scrape time, its dead letters, and no live-looking gauges from a stale
report."""

from __future__ import annotations

from engine.metrics import STALE_REPORT_S, Metrics
from streams.stats import StreamStats


def test_stats_count_dead_letters_per_topic_and_stamp_the_report() -> None:
    stats = StreamStats()
    stats.dead_lettered("crm")
    stats.dead_lettered("crm")
    stats.dead_lettered("decisions", 3)
    snapshot = stats.snapshot()
    assert snapshot["crm|dead_letters"] == 2
    assert snapshot["decisions|dead_letters"] == 3
    assert "at" in snapshot


def lines_of(text: bytes) -> list[str]:
    return [line for line in text.decode().splitlines() if not line.startswith("#")]


def test_a_fresh_report_shows_its_age_its_lag_and_its_dead_letters() -> None:
    report = {"at": 1000.0, "clickstream|lag": 0.0, "clickstream|dead_letters": 4.0}
    lines = lines_of(Metrics().streams({"w1": report}, now=1002.5))
    assert 'nba_stream_worker_report_age_seconds{worker="w1"} 2.5' in lines
    assert 'nba_stream_consumer_lag{worker="w1",topic="clickstream"} 0.0' in lines
    assert 'nba_stream_dead_letters_total{worker="w1",topic="clickstream"} 4.0' in lines


def test_a_stale_report_keeps_its_age_and_counters_but_not_its_gauges() -> None:
    report = {
        "at": 1000.0,
        "clickstream|lag": 0.0,
        "clickstream|freshness_p50": 0.01,
        "clickstream|applied": 10.0,
        "clickstream|dead_letters": 1.0,
    }
    now = 1000.0 + STALE_REPORT_S + 5
    lines = lines_of(Metrics().streams({"hung": report}, now=now))
    age = f'nba_stream_worker_report_age_seconds{{worker="hung"}} {STALE_REPORT_S + 5}'
    assert age in lines
    assert not [line for line in lines if line.startswith("nba_stream_consumer_lag")]
    assert not [line for line in lines if line.startswith("nba_stream_freshness_seconds")]
    assert 'nba_stream_events_applied_total{worker="hung",topic="clickstream"} 10.0' in lines
    assert 'nba_stream_dead_letters_total{worker="hung",topic="clickstream"} 1.0' in lines
