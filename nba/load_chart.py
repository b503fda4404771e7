"""The chart ``nba loadtest`` writes beside its report: requests/s per caller and latency
percentiles over time."""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nba.load_measures import QUANTILES, quantile


def _float(value: str | None) -> float:
    try:
        return float(value) if value not in (None, "", "N/A") else math.nan
    except ValueError:
        return math.nan


@dataclass
class Series:
    """What the chart shows, per second since Locust started."""

    rates: dict[str, dict[float, float]] = field(default_factory=dict)  # caller -> t -> req/s
    latency: dict[str, dict[float, float]] = field(default_factory=dict)  # label -> t -> ms
    warmup_end: float | None = None
    source: str = ""


def timeline_series(details: list[dict[str, Any]]) -> Series:
    """Exact per-second counts and percentiles from the locustfile's timeline."""
    requests: dict[int, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    web: dict[int, collections.Counter[float]] = collections.defaultdict(collections.Counter)
    every: dict[int, collections.Counter[float]] = collections.defaultdict(collections.Counter)
    for detail in details:
        for second, slot in detail.get("timeline", {}).items():
            t = int(second)
            requests[t].update(slot.get("requests", {}))
            for key, n in slot.get("web", {}).items():
                web[t][int(key) / 10.0] += n
            for key, n in slot.get("all", {}).items():
                every[t][int(key) / 10.0] += n
    series = Series(source="per second, exact (locustfile timeline)")
    if not requests:
        return series
    t0 = min(d.get("started", min(requests)) for d in details)
    last = max(requests)  # the last second is partial: leave it out
    for t in sorted(requests):
        if t == last:
            continue
        x = t - int(t0)
        for kind, n in requests[t].items():
            series.rates.setdefault(kind, {})[x] = float(n)
        series.rates.setdefault("all", {})[x] = float(sum(requests[t].values()))
        for label, hist in (("web decisions", web[t]), ("all requests", every[t])):
            if not hist:
                continue
            for name, q in QUANTILES:
                value = quantile(hist, q)
                if value is not None:
                    series.latency.setdefault(f"{label} {name}", {})[x] = value
    spawned = [d["since"] for d in details if d.get("arrivals")]
    if spawned:
        series.warmup_end = min(spawned) - t0
    return series


def history_series(history: list[dict[str, str]]) -> Series:
    """Fallback: Locust's stats history (request counts per interval; its percentiles
    are over a moving 10 s window, in whole ms)."""
    series = Series(source="Locust stats history (percentiles over a 10 s window)")
    if not history:
        return series
    t0 = min(_float(r["Timestamp"]) for r in history)
    previous: dict[str, tuple[float, float]] = {}
    for row in history:
        t = _float(row["Timestamp"]) - t0
        name = row["Name"]
        total = _float(row.get("Total Request Count"))
        kind = "all" if name == "Aggregated" else name.split(":", 1)[0]
        last_t, last_total = previous.get(name, (t, total))
        previous[name] = (t, total)
        if t > last_t and total >= last_total:
            rates = series.rates.setdefault(kind, {})
            rates[t] = rates.get(t, 0.0) + (total - last_total) / (t - last_t)
        elif total < last_total and series.warmup_end is None:
            series.warmup_end = t  # --reset-stats: totals start again
        label = {"Aggregated": "all requests", "web: POST /v1/decisions": "web decisions"}.get(name)
        if label is not None and total > 0:
            for p, q in (("50%", "p50"), ("95%", "p95"), ("99%", "p99")):
                value = _float(row.get(p))
                if not math.isnan(value) and value > 0:
                    series.latency.setdefault(f"{label} {q}", {})[t] = value
    return series


def plot(series: Series, path: Path, title: str) -> None:
    """Requests/s per caller (top) and latency percentiles (bottom) over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 7.5), sharex=True)
    for kind, points in sorted(series.rates.items()):
        xs = sorted(points)
        top.plot(xs, [points[x] for x in xs], label=kind, lw=2.2 if kind == "all" else 1.2)
    top.set_ylabel("requests/s")
    top.legend(loc="lower right", fontsize=8, ncol=5)
    top.grid(alpha=0.3)
    styles = {"p50": ":", "p95": "--", "p99": "-"}
    colours = {"web decisions": "tab:blue", "all requests": "tab:grey"}
    for label, points in sorted(series.latency.items()):
        who, q = label.rsplit(" ", 1)
        xs = sorted(points)
        bottom.plot(xs, [points[x] for x in xs], styles[q], color=colours[who], label=label)
    bottom.set_ylabel("client latency, ms")
    bottom.set_yscale("log")
    bottom.set_xlabel(f"seconds since Locust started; {series.source}")
    bottom.legend(loc="upper right", fontsize=8, ncol=2)
    bottom.grid(alpha=0.3, which="both")
    if series.warmup_end is not None:
        for axis in (top, bottom):
            axis.axvspan(0, series.warmup_end, color="0.92", zorder=0)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
