"""Prometheus metrics of the API, in a registry of its own (one per app).

With several API processes (``PROMETHEUS_MULTIPROC_DIR`` set), every process writes its
samples to that folder and ``/metrics``, whichever process answers, reports them all.
"""

from __future__ import annotations

import os
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from engine.decisions import BatchTimes

# 50 µs apart up to 1 ms: the decision's targets are a p50 of half a millisecond and a
# p99 of two, and a quantile is interpolated linearly inside its bucket
LATENCY_BUCKETS = (
    *(round(i * 0.00005, 5) for i in range(1, 21)),  # 0.05 ... 1 ms
    0.00125,
    0.0015,
    0.00175,
    0.002,
    0.0025,
    0.003,
    0.004,
    0.005,
    0.0075,
    0.01,
    0.02,
    0.05,
    0.1,
    0.5,
)
BATCH_SIZES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 128, 256, 512, 1000)
PHASES = ("forming", "read", "ranking", "reserving")
# A worker reports every second and measures its lag every 5 s: a report older than three
# lag measurements is stale, and its gauges (lag, freshness) are not exported as if live
STALE_REPORT_S = 15.0


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._series: dict[tuple[str, str, bool], tuple[Any, Any]] = {}
        self.multiprocess_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        self.decision_seconds = Histogram(
            "nba_decision_seconds",
            "Server-side time of one decision, request parsed to response built.",
            ["channel"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            "nba_decision_batch_seconds",
            "Server-side time of one batch of decisions.",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=self.registry,
        )
        self.phase_seconds = Histogram(
            "nba_decision_phase_seconds",
            "Server-side time of one batch of page views decided together, by phase: "
            "forming (the first waits one turn of the event loop for the others), the store "
            "read, ranking and answering, and contact-cap reservations (only batches that "
            "made them).",
            ["phase"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "nba_decision_batch_size",
            "Decisions in one batch of page views decided together.",
            buckets=BATCH_SIZES,
            registry=self.registry,
        )
        self._phases = [self.phase_seconds.labels(phase) for phase in PHASES]
        self.decisions = Counter(
            "nba_decisions_total",
            "Decisions answered, by channel, group and fallback.",
            ["channel", "group", "fallback"],
            registry=self.registry,
        )
        self.events = Counter(
            "nba_events_accepted_total",
            "Events and responses accepted over HTTP, by topic.",
            ["topic"],
            registry=self.registry,
        )
        self.model_info = Gauge(
            "nba_model_loaded",
            "1 for the model version in use.",
            ["version"],
            registry=self.registry,
            multiprocess_mode="max",
        )
        self.spooled = Gauge(
            "nba_spooled_records",
            "Records waiting in the local spool for the broker to return.",
            registry=self.registry,
            multiprocess_mode="livesum",
        )

    def decided(self, channel: str, group: str, fallback: bool, seconds: float) -> None:
        """One decision's time and count. The labelled series are looked up once each:
        ``labels()`` costs more than the observation itself."""
        found = self._series.get((channel, group, fallback))
        if found is None:
            found = self._series[(channel, group, fallback)] = (
                self.decision_seconds.labels(channel),
                self.decisions.labels(channel, group, str(fallback).lower()),
            )
        found[0].observe(seconds)
        found[1].inc()

    def batch_timed(self, times: BatchTimes) -> None:
        """One batch's phases (engine.batching), each series looked up at start."""
        forming, read, ranking, reserving = self._phases
        forming.observe(times.forming)
        read.observe(times.read)
        ranking.observe(times.ranking)
        if times.reserving:
            reserving.observe(times.reserving)
        self.batch_size.observe(times.size)

    def streams(self, workers: dict[str, dict[str, float]], now: float | None = None) -> bytes:
        """The stream workers' figures (published to the store) in Prometheus text.

        Every worker's report carries the time it was made (``at``); its age is worked
        out here, at scrape time, so a worker that hangs shows a growing age rather than
        its last figures frozen. Past :data:`STALE_REPORT_S` its lag and freshness gauges
        are left out (a lag of 0 from a hung worker reads as healthy); its counters stay.
        """
        now = time.time() if now is None else now
        lines = [
            "# HELP nba_stream_worker_report_age_seconds Seconds since the worker last "
            f"reported; past {STALE_REPORT_S:g} s its lag and freshness are not exported.",
            "# TYPE nba_stream_worker_report_age_seconds gauge",
            "# HELP nba_stream_dead_letters_total Events sent to the dead-letter topic, per "
            "topic read.",
            "# TYPE nba_stream_dead_letters_total counter",
            "# HELP nba_stream_events_applied_total Events applied to the store, per topic.",
            "# TYPE nba_stream_events_applied_total counter",
            "# HELP nba_stream_freshness_seconds Event time to feature stored, recent events.",
            "# TYPE nba_stream_freshness_seconds gauge",
            "# HELP nba_stream_consumer_lag Events not yet committed by the worker group.",
            "# TYPE nba_stream_consumer_lag gauge",
        ]
        for worker, fields in sorted(workers.items()):
            stale = False  # a report without its time cannot be judged
            if "at" in fields:
                age = max(now - fields["at"], 0.0)
                stale = age > STALE_REPORT_S
                lines.append(f'nba_stream_worker_report_age_seconds{{worker="{worker}"}} {age}')
            for key, value in sorted(fields.items()):
                if "|" not in key:
                    continue
                topic, metric = key.split("|", 1)
                labels = f'worker="{worker}",topic="{topic}"'
                if metric == "applied":
                    lines.append(f"nba_stream_events_applied_total{{{labels}}} {value}")
                elif metric == "dead_letters":
                    lines.append(f"nba_stream_dead_letters_total{{{labels}}} {value}")
                elif stale:
                    continue
                elif metric.startswith("freshness_p"):
                    quantile = "0.5" if metric.endswith("50") else "0.99"
                    lines.append(
                        f'nba_stream_freshness_seconds{{{labels},quantile="{quantile}"}} {value}'
                    )
                elif metric == "lag":
                    lines.append(f"nba_stream_consumer_lag{{{labels}}} {value}")
        return ("\n".join(lines) + "\n").encode()

    def render(self) -> bytes:
        if self.multiprocess_dir:
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
            return bytes(generate_latest(registry))
        return bytes(generate_latest(self.registry))
