"""What the stream worker reports about itself: per topic, events applied, events
dead-lettered, how fresh the features are (event time to stored), and the consumer
group's lag; and when it reported (``at``), so a reader can tell a hung worker's old
figures from live ones."""

from __future__ import annotations

import time
from collections import deque

import numpy as np

RESERVOIR = 2000


class StreamStats:
    def __init__(self) -> None:
        self.applied: dict[str, int] = {}
        self.freshness: dict[str, deque[float]] = {}
        self.lag: dict[str, int] = {}
        self.dead_letters: dict[str, int] = {}

    def observe(self, topic: str, event_times: list[float], applied: int) -> None:
        """After a batch is stored: its events' age now, and how many were new."""
        now = time.time()
        window = self.freshness.setdefault(topic, deque(maxlen=RESERVOIR))
        window.extend(now - t for t in event_times)
        self.applied[topic] = self.applied.get(topic, 0) + applied

    def dead_lettered(self, topic: str, count: int = 1) -> None:
        """``count`` events read from ``topic`` went to the dead-letter topic."""
        self.dead_letters[topic] = self.dead_letters.get(topic, 0) + count

    def snapshot(self) -> dict[str, float]:
        """Flat fields ``<topic>|<metric>`` for the operations hash."""
        out: dict[str, float] = {"at": time.time()}
        for topic, count in self.applied.items():
            out[f"{topic}|applied"] = count
        for topic, ages in self.freshness.items():
            if ages:
                p50, p99 = np.percentile(np.fromiter(ages, float), [50, 99])
                out[f"{topic}|freshness_p50"] = float(p50)
                out[f"{topic}|freshness_p99"] = float(p99)
        for topic, lag in self.lag.items():
            out[f"{topic}|lag"] = lag
        for topic, count in self.dead_letters.items():
            out[f"{topic}|dead_letters"] = count
        return out
