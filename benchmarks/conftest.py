"""Benchmarks share the suite's fixtures (the embedded stack) and write their figures
to benchmarks/results/ as JSON when the session ends."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import running, stack  # noqa: F401  (fixtures)

RESULTS = Path(__file__).resolve().parent / "results"


class DiscardSink:
    """A decision log that goes nowhere: the records are built and serialised, not sent."""

    async def send(self, topic: str, key: str, value: bytes) -> None: ...
    def send_nowait(self, topic: str, key: str, value: bytes) -> None: ...
    async def close(self) -> None: ...


_collected: dict[str, dict[str, Any]] = {}


def record(name: str, samples_s: list[float], **extra: Any) -> dict[str, Any]:
    """Percentiles of one measurement, kept for the session's results file."""
    us = np.asarray(samples_s) * 1e6
    figures = {
        "n": int(us.size),
        "p50_us": float(np.percentile(us, 50)),
        "p90_us": float(np.percentile(us, 90)),
        "p99_us": float(np.percentile(us, 99)),
        "mean_us": float(us.mean()),
        **extra,
    }
    _collected[name] = figures
    return figures


def timed(fn: Any, rounds: int, warmup: int = 200) -> list[float]:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return samples


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not _collected:
        return
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    path = RESULTS / f"{stamp}-bench.json"
    path.write_text(
        json.dumps(
            {
                "when": stamp,
                "machine": {
                    "cpus": __import__("os").cpu_count(),
                    "python": platform.python_version(),
                    "platform": platform.platform(),
                },
                "results": _collected,
            },
            indent=2,
        )
    )
    from benchmarks.plot import plot_bench

    plot_bench(path)
