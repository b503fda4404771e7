"""What each Locust process of ``benchmarks/locustfile.py`` measures and writes: exact
latency histograms, schedule lateness, fallbacks and failures per request name, and a
per-second timeline for the chart. Kept beside the locustfile, which imports it by its
file name (Locust puts the locustfile's folder on the import path)."""

from __future__ import annotations

import collections
import os
import time
from typing import Any


class Detail:
    """Exact latencies and schedule lateness per request name, after spawning completed."""

    def __init__(self, run: dict[str, Any]) -> None:
        self.run = run  # the offered load, written with every dump
        # Never reset: failures of the whole run, and per second of wall time (warm-up
        # included) the requests by caller and the latencies (0.1 ms steps) for the chart.
        self.started = time.time()
        self.failures_all_run: collections.Counter[str] = collections.Counter()
        self.timeline: dict[int, dict[str, collections.Counter[Any]]] = {}
        self.reset()

    def second(self, now: float) -> dict[str, collections.Counter[Any]]:
        slot = self.timeline.get(int(now))
        if slot is None:
            slot = self.timeline[int(now)] = {
                "requests": collections.Counter(),
                "failures": collections.Counter(),
                "web": collections.Counter(),
                "all": collections.Counter(),
            }
        return slot

    def reset(self) -> None:
        self.since = time.time()
        self.until: float | None = None
        self.latency: dict[str, collections.Counter[int]] = collections.defaultdict(
            collections.Counter
        )
        self.lateness: dict[str, collections.Counter[int]] = collections.defaultdict(
            collections.Counter
        )
        self.arrivals: collections.Counter[str] = collections.Counter()
        self.dropped: collections.Counter[str] = collections.Counter()
        self.fallbacks: collections.Counter[str] = collections.Counter()
        self.failures: collections.Counter[str] = collections.Counter()
        self.cpu_warnings = 0

    def dump(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "started": self.started,
            "since": self.since,
            "until": self.until or time.time(),
            "latency_10us": {k: dict(v) for k, v in self.latency.items()},
            "lateness_ms": {k: dict(v) for k, v in self.lateness.items()},
            "arrivals": dict(self.arrivals),
            "dropped": dict(self.dropped),
            "fallbacks": dict(self.fallbacks),
            "cpu_warnings": self.cpu_warnings,
            "failures": dict(self.failures),
            "failures_all_run": dict(self.failures_all_run),
            "timeline": {
                t: {k: dict(c) for k, c in slot.items()} for t, slot in self.timeline.items()
            },
            **self.run,
        }
