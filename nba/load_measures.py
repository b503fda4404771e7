"""What ``nba loadtest`` reads off the servers: quantiles of latency histograms, the API's
``/metrics`` over the measured window, the CPU each process used, and the stream worker's
backlog when the load stops."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from engine.metrics import PHASES

QUANTILES = (("p50", 0.50), ("p95", 0.95), ("p99", 0.99))


def step(message: str) -> None:
    """A line of the load test's progress, with the time."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def quantile(hist: Mapping[float, int], q: float) -> float | None:
    """The ``q`` quantile of a histogram of exact values (value -> count)."""
    total = sum(hist.values())
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for value in sorted(hist):
        seen += hist[value]
        if seen >= rank:
            return value
    return max(hist)


def bucket_quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """Prometheus-style quantile from cumulative ``(le, count)`` pairs, interpolated
    linearly inside the bucket; past the last finite bound, that bound."""
    buckets = sorted(buckets)
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if math.isinf(le):
                return lower
            if count == below:
                return le
            return lower + (le - lower) * (rank - below) / (count - below)
        lower, below = le, count
    return lower


def rounded(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


# ---- /metrics -------------------------------------------------------------------------------


def scrape(base_url: str) -> dict[str, Any] | None:
    """The server's ``/metrics``, parsed; None if it does not answer within 30 s."""
    try:
        reply = httpx.get(f"{base_url}/metrics", timeout=30.0)
        reply.raise_for_status()
    except httpx.HTTPError as exc:
        step(f"could not read {base_url}/metrics: {exc!r}")
        return None
    return parse_metrics(reply.text)


def parse_metrics(text: str) -> dict[str, Any]:
    """The server's decision histograms and counters, by channel."""
    from prometheus_client.parser import text_string_to_metric_families

    decision: dict[str, dict[float, float]] = collections.defaultdict(dict)
    batch: dict[float, float] = {}
    counts: dict[tuple[str, str, str], float] = {}
    phases: dict[str, dict[float, float]] = collections.defaultdict(dict)
    sizes: dict[float, float] = {}
    sums: dict[str, float] = collections.defaultdict(float)  # phase or "size" -> total
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "nba_decision_phase_seconds_bucket":
                _add_bucket(phases[labels["phase"]], labels, sample.value)
            elif sample.name == "nba_decision_phase_seconds_sum":
                sums[labels["phase"]] += sample.value
            elif sample.name == "nba_decision_batch_size_bucket":
                _add_bucket(sizes, labels, sample.value)
            elif sample.name == "nba_decision_batch_size_sum":
                sums["size"] += sample.value
            elif sample.name == "nba_decision_seconds_bucket":
                _add_bucket(decision[labels.get("channel", "?")], labels, sample.value)
            elif sample.name == "nba_decision_batch_seconds_bucket":
                _add_bucket(batch, labels, sample.value)
            elif sample.name == "nba_decisions_total":
                key = (labels["channel"], labels["group"], labels["fallback"])
                counts[key] = counts.get(key, 0.0) + sample.value
    return {
        "decision": dict(decision),
        "batch": batch,
        "counts": counts,
        "phases": dict(phases),
        "batch_sizes": sizes,
        "sums": dict(sums),
    }


def _add_bucket(buckets: dict[float, float], labels: Mapping[str, str], value: float) -> None:
    """A histogram bucket's count added to its upper bound (every API process's)."""
    le = float(labels["le"])
    buckets[le] = buckets.get(le, 0.0) + value


def _diff(after: Mapping[float, float], before: Mapping[float, float]) -> list[tuple[float, float]]:
    return [(le, count - before.get(le, 0.0)) for le, count in after.items()]


def _latency(buckets: list[tuple[float, float]]) -> dict[str, Any]:
    count = max((c for _, c in buckets), default=0.0)
    out: dict[str, Any] = {"count": int(count)}
    for label, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        value = bucket_quantile(buckets, q)
        out[f"{label}_ms"] = rounded(None if value is None else value * 1000.0, 3)
    return out


def _phases(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Where the page views' batches spent their time over the window (the API's
    ``nba_decision_phase_seconds``), and how many decisions a batch held."""
    out: dict[str, Any] = {}
    before_sums, after_sums = before["sums"], after["sums"]
    for phase in (p for p in PHASES if p in after["phases"]):  # in a decision's order
        diff = _diff(after["phases"][phase], before["phases"].get(phase, {}))
        figures = _latency(diff)
        total = after_sums.get(phase, 0.0) - before_sums.get(phase, 0.0)
        count = figures["count"]
        figures["mean_ms"] = rounded(total * 1000.0 / count, 3) if count else None
        out[phase] = figures
    diff = _diff(after["batch_sizes"], before["batch_sizes"])
    batches = max((c for _, c in diff), default=0.0)
    total = after_sums.get("size", 0.0) - before_sums.get("size", 0.0)
    sizes = {
        "batches": int(batches),
        "mean": rounded(total / batches) if batches else None,
        "p99": bucket_quantile(diff, 0.99) if batches else None,
    }
    return {"phases": out, "batch_size": sizes}


def server_report(before: dict[str, Any], after: dict[str, Any], seconds: float) -> dict[str, Any]:
    by_channel: dict[str, Any] = {}
    merged: dict[float, float] = collections.defaultdict(float)
    for channel, buckets in sorted(after["decision"].items()):
        diff = _diff(buckets, before["decision"].get(channel, {}))
        for le, count in diff:
            merged[le] += count
        by_channel[channel] = _latency(diff)
    decisions: dict[str, float] = collections.defaultdict(float)
    fallbacks = 0.0
    control = 0.0
    for key, value in after["counts"].items():
        delta = value - before["counts"].get(key, 0.0)
        decisions[key[0]] += delta
        fallbacks += delta if key[2] == "true" else 0.0
        control += delta if key[1] == "control" else 0.0
    total = sum(decisions.values())
    return {
        "note": "from nba_decision_seconds (single decisions; bucket bounds every 0.05 ms "
        "up to 1 ms, then 1.25, 1.5, 1.75, 2, 2.5, 3, 4, 5, 7.5, 10 ms…, linear inside a "
        "bucket) over the measured window",
        "decision_latency": {"all": _latency(sorted(merged.items())), **by_channel},
        "batch_latency": _latency(_diff(after["batch"], before["batch"])),
        "page_view_batches": _phases(before, after),
        "decisions": {k: int(v) for k, v in sorted(decisions.items())},
        "decisions_per_s": round(total / seconds, 1) if seconds > 0 else None,
        "fallbacks": int(fallbacks),
        "control": int(control),
    }


# ---- CPU per process ---------------------------------------------------------------------


@dataclass
class CpuWatch:
    """CPU seconds of named process trees and of the whole machine over a window."""

    roots: dict[str, int] = field(default_factory=dict)
    start: dict[str, dict[int, float]] = field(default_factory=dict)
    start_waits: dict[str, dict[int, float]] = field(default_factory=dict)
    start_system: Any = None
    started_at: float = 0.0
    start_all: dict[int, tuple[str, float]] = field(default_factory=dict)

    @staticmethod
    def _everything() -> dict[int, tuple[str, float]]:
        """Every process on the machine: a short description and its CPU seconds."""
        import psutil

        out: dict[int, tuple[str, float]] = {}
        for proc in psutil.process_iter(["name", "cmdline", "cpu_times"]):
            info = proc.info
            times = info.get("cpu_times")
            if times is None:
                continue
            words = [Path(w).name if i == 0 else w for i, w in enumerate(info["cmdline"] or [])]
            out[proc.pid] = (" ".join(words)[:100] or str(info["name"]), times.user + times.system)
        return out

    def _sample(self) -> dict[str, dict[int, float]]:
        import psutil

        out: dict[str, dict[int, float]] = {}
        for name, pid in self.roots.items():
            times: dict[int, float] = {}
            try:
                root = psutil.Process(pid)
                for proc in [root, *root.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):
                        t = proc.cpu_times()
                        times[proc.pid] = t.user + t.system
            except psutil.Error:
                pass
            out[name] = times
        return out

    def _waits(self) -> dict[str, dict[int, float]]:
        """Seconds each thread of the named trees has spent ready to run but waiting for
        a CPU (the kernel's ``schedstat``); empty where the kernel does not keep it."""
        import psutil

        out: dict[str, dict[int, float]] = {}
        for name, pid in self.roots.items():
            waits: dict[int, float] = {}
            with contextlib.suppress(psutil.Error):
                root = psutil.Process(pid)
                for proc in [root, *root.children(recursive=True)]:
                    waits |= runqueue_waits(proc.pid)
            out[name] = waits
        return out

    def begin(self) -> None:
        import psutil

        self.start = self._sample()
        self.start_waits = self._waits()
        self.start_all = self._everything()
        self.start_system = psutil.cpu_times()
        self.started_at = time.monotonic()

    def end(self) -> dict[str, Any]:
        import psutil

        if self.start_system is None:
            return {}
        seconds = time.monotonic() - self.started_at
        now = self._sample()
        waits = self._waits()
        everything = self._everything()
        system = psutil.cpu_times()
        ours = {pid for times in now.values() for pid in times}
        others = sorted(
            (
                (cpu - self.start_all.get(pid, ("", 0.0))[1], what)
                for pid, (what, cpu) in everything.items()
                if pid not in ours and pid != os.getpid()
            ),
            reverse=True,
        )
        per_process: dict[str, float] = {}
        for name, times in now.items():
            used = sum(t - self.start[name].get(pid, t) for pid, t in times.items())
            per_process[name] = round(100.0 * used / seconds, 1) if seconds > 0 else 0.0
        waiting: dict[str, float] = {}
        for name, threads in waits.items():
            before = self.start_waits.get(name, {})
            if threads and seconds > 0:
                waited = sum(w - before.get(tid, w) for tid, w in threads.items())
                waiting[name] = round(100.0 * waited / seconds, 1)
        deltas = {f: getattr(system, f) - getattr(self.start_system, f) for f in system._fields}
        total = sum(deltas.values()) or 1.0
        idle = deltas.get("idle", 0.0) + deltas.get("iowait", 0.0)
        busy_cores = (1 - idle / total) * (os.cpu_count() or 1)
        return {
            "note": "percent of one core over the measured window (100 = one core busy)",
            "per_process": per_process,
            "waiting_for_a_cpu": {
                "note": "seconds its threads spent ready to run but waiting for a CPU, "
                "per second of the window, in percent (from /proc/*/task/*/schedstat)",
                "per_process": waiting,
            },
            "machine_busy_percent_of_all_cores": round(100.0 * (1 - idle / total), 1),
            "machine_steal_percent": round(100.0 * deltas.get("steal", 0.0) / total, 1),
            "outside_these_processes": round(100.0 * busy_cores - sum(per_process.values()), 1),
            "machine_breakdown_percent_of_all_cores": {
                f: round(100.0 * v / total, 1) for f, v in deltas.items() if v > 0
            },
            "busiest_other_processes": [
                {"percent": round(100.0 * used / seconds, 1), "process": what}
                for used, what in others[:6]
                if seconds > 0 and used / seconds >= 0.01
            ],
        }


def worker_backlog(
    brokers: str, group: str | Mapping[str, str], topics: Mapping[str, str], timeout_s: float = 60.0
) -> dict[str, Any]:
    """How far behind the stream worker is when the load stops, and how long it takes to
    catch up. ``topics`` maps a short name to the topic; ``group`` is the group reading
    them, or each topic's group (:func:`streams.worker.reading_groups`). A worker that
    kept up is behind by what arrived since its last commit (every 0.5 s), and catches up
    at once; one that was starved of CPU shows it here, where the latency figures would not."""
    from streams.lag import consumer_lag, wait_for_lag_zero

    names = {topic: short for short, topic in topics.items()}
    lag = asyncio.run(consumer_lag(brokers, group, list(topics.values())))
    started = time.monotonic()
    caught_up = asyncio.run(wait_for_lag_zero(brokers, group, list(topics.values()), timeout_s))
    return {
        "events_behind": sum(lag.values()),
        "by_topic": {names[topic]: n for topic, n in lag.items()},
        "caught_up_in_s": round(time.monotonic() - started, 1) if caught_up else None,
    }


def runqueue_waits(pid: int) -> dict[int, float]:
    """Each thread of ``pid``: the seconds it has waited on a run queue since it began."""
    found: dict[int, float] = {}
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                stats = Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()
                found[int(tid)] = int(stats[1]) / 1e9
    return found
