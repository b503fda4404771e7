"""The report ``nba loadtest`` writes and prints: per caller, the offered, started and
achieved rates and client latencies; the server's figures; the code and the machine."""

from __future__ import annotations

import collections
import contextlib
import os
import platform
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from nba.load_locust import LocustRun
from nba.load_measures import QUANTILES, quantile, rounded, server_report
from nba.load_offer import (
    DESK_SHARE,
    EMAIL_BATCH,
    EMAIL_DECISION_SHARE,
    MAIN_REQUESTS,
    RATE_UNITS,
    RESPONSE_SHARE,
)

ROOT = Path(__file__).resolve().parent.parent


def _merge_details(details: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    latency: dict[str, collections.Counter[float]] = collections.defaultdict(collections.Counter)
    lateness: dict[str, collections.Counter[float]] = collections.defaultdict(collections.Counter)
    merged: dict[str, Any] = {
        "arrivals": collections.Counter(),
        "dropped": collections.Counter(),
        "fallbacks": collections.Counter(),
        "failures": collections.Counter(),
        "failures_all_run": collections.Counter(),
        "cpu_warnings": 0,
        "seconds": 0.0,
    }
    for detail in details:
        for name, hist in detail.get("latency_10us", {}).items():
            for key, n in hist.items():
                latency[name][int(key) / 100.0] += n
        for name, hist in detail.get("lateness_ms", {}).items():
            for key, n in hist.items():
                lateness[name][float(key)] += n
        for key in ("arrivals", "dropped", "fallbacks", "failures", "failures_all_run"):
            merged[key].update(detail.get(key, {}))
        merged["cpu_warnings"] += detail.get("cpu_warnings", 0)
        if detail.get("arrivals"):
            merged["seconds"] = max(merged["seconds"], detail["until"] - detail["since"])
    merged["latency"] = latency
    merged["lateness"] = lateness
    return merged


def _latency_summary(hist: Mapping[float, int]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for label, q in QUANTILES:
        out[f"{label}_ms"] = rounded(quantile(hist, q))
    out["max_ms"] = rounded(max(hist) if hist else None)
    return out


def build_report(
    run: LocustRun,
    rate: float,
    rates: Mapping[str, float],
    users: Mapping[str, int],
    duration: float,
    warmup: float,
    workers: int | None,
    base_url: str,
    started_stack: bool,
) -> dict[str, Any]:
    detail = _merge_details(run.details)
    seconds = detail["seconds"] or duration
    rows = {row["Name"]: row for row in run.stats if row.get("Name") != "Aggregated"}
    classes: dict[str, Any] = {}
    total_failures = 0
    all_latency: collections.Counter[float] = collections.Counter()
    for kind in rates:
        names = sorted(
            n
            for n in set(rows) | set(detail["latency"]) | set(detail["failures"])
            if n.startswith(kind + ":")
        )
        endpoints: dict[str, Any] = {}
        class_latency: collections.Counter[float] = collections.Counter()
        requests = failures = 0
        for name in names:
            row = rows.get(name, {})
            hist = detail["latency"].get(name, collections.Counter())
            failed = detail["failures"].get(name, 0)
            count = sum(hist.values()) + failed
            requests += count
            failures += failed
            class_latency.update(hist)
            endpoints[name] = {
                "requests": count,
                "failures": failed,
                "requests_per_s": round(count / seconds, 1),
                **_latency_summary(hist),
                "fallbacks": detail["fallbacks"].get(name, 0),
                "locust_requests": int(row.get("Request Count", 0) or 0),
                "locust_failures": int(row.get("Failure Count", 0) or 0),
                "locust_percentiles_ms": {
                    k: row.get(k) for k in ("50%", "95%", "99%", "100%") if k in row
                },
            }
        all_latency.update(class_latency)
        total_failures += failures
        main = sum(endpoints.get(n, {}).get("requests", 0) for n in MAIN_REQUESTS[kind])
        lateness = detail["lateness"].get(kind, collections.Counter())
        classes[kind] = {
            "unit": RATE_UNITS[kind],
            "users": users[kind],
            "offered_rate": round(rates[kind], 3),
            "started_rate": round(detail["arrivals"].get(kind, 0) / seconds, 2),
            "achieved_rate": round(main / seconds, 2),
            "requests": requests,
            "failures": failures,
            "requests_per_s": round(requests / seconds, 1),
            **_latency_summary(class_latency),
            "schedule_lateness_ms": {
                "p50": quantile(lateness, 0.5),
                "p99": quantile(lateness, 0.99),
                "max": max(lateness) if lateness else None,
            },
            "dropped_arrivals": detail["dropped"].get(kind, 0),
            "endpoints": endpoints,
        }
    if "email" in classes:
        classes["email"]["offered_decisions_per_s"] = round(rates["email"] * EMAIL_BATCH, 2)
        classes["email"]["achieved_decisions_per_s"] = round(
            classes["email"]["achieved_rate"] * EMAIL_BATCH, 1
        )
    warmup_failures = sum(detail["failures_all_run"].values()) - total_failures
    report: dict[str, Any] = {
        "kind": "nba loadtest",
        "target": {
            "url": base_url,
            "stack_started_here": started_stack,
            "api_workers": workers,
        },
        "load": {
            "web_rate": rate,
            "duration_s": duration,
            "warmup_s": warmup,
            "measured_s": round(seconds, 2),
            "arrivals": "poisson"
            if all(d.get("poisson", True) for d in run.details)
            else "uniform",
            "shares_of_web_rate": {
                "desk_sessions": DESK_SHARE,
                "email_decisions": EMAIL_DECISION_SHARE,
                "responses": RESPONSE_SHARE,
            },
            "email_batch": EMAIL_BATCH,
            "users": dict(users),
        },
        "client": {
            "note": "latencies measured by Locust (FastHttpUser) on this machine, exact to "
            "10 µs, after all users were spawned; locust_percentiles_ms are Locust's own "
            "(rounded) figures",
            "classes": classes,
            "all": {
                "requests": sum(c["requests"] for c in classes.values()),
                "failures": total_failures,
                "failures_during_warmup": max(0, warmup_failures),
                **_latency_summary(all_latency),
            },
            "failure_messages": [
                {"name": f.get("Name"), "error": f.get("Error"), "count": f.get("Occurrences")}
                for f in run.failures[:20]
            ],
            "locust_cpu_warnings": detail["cpu_warnings"],
            "locust_exit_code": run.returncode,
        },
        "cpu": run.cpu,
        "machine": machine_info(),
        "code": code_info(),
    }
    if run.server_before is not None and run.server_after is not None:
        report["server"] = server_report(run.server_before, run.server_after, seconds)
        report["server"]["metrics_scrape_seconds"] = run.scrape_seconds
    return report


def code_info() -> dict[str, Any]:
    """Which code was measured: the commit and how many files differed from it."""

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=True
        )
        return done.stdout.strip()

    try:
        changed = [line for line in git("status", "--porcelain").splitlines() if line]
        return {"commit": git("rev-parse", "HEAD"), "uncommitted_files": len(changed)}
    except (OSError, subprocess.SubprocessError):
        return {}


def machine_info() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        locust_version = version("locust")  # never import locust here: gevent patches on import
    except PackageNotFoundError:
        locust_version = "?"
    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "locust": locust_version,
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(Exception):
        import psutil

        info["memory_gb"] = round(psutil.virtual_memory().total / 2**30, 1)
    return info


def print_summary(report: dict[str, Any]) -> None:
    print("\nload test")
    for kind, c in report["client"]["classes"].items():
        print(
            f"  {kind:<10} offered {c['offered_rate']:>8.2f} achieved {c['achieved_rate']:>8.2f} "
            f"{c['unit']:<12} requests {c['requests']:>7} failures {c['failures']:>3}  "
            f"p50 {c['p50_ms']} p95 {c['p95_ms']} p99 {c['p99_ms']} max {c['max_ms']} ms"
            + (f"  ({c['dropped_arrivals']} arrivals dropped)" if c["dropped_arrivals"] else "")
        )
    server = report.get("server")
    if server:
        lat = server["decision_latency"]["all"]
        print(
            f"  server     decisions {lat['count']} ({server['decisions_per_s']}/s), "
            f"p50 {lat['p50_ms']} ms, p99 {lat['p99_ms']} ms, fallbacks {server['fallbacks']}"
        )
        batches = server.get("page_view_batches")
        if batches and batches["batch_size"]["batches"]:
            parts = ", ".join(
                f"{phase} {f['mean_ms']}" for phase, f in batches["phases"].items() if f["count"]
            )
            print(
                f"  batches    {batches['batch_size']['batches']} of page views, "
                f"{batches['batch_size']['mean']} decisions each on average; mean ms: {parts}"
            )
    backlog = report.get("stream_worker")
    if backlog:
        topics = ", ".join(f"{k} {v}" for k, v in backlog["by_topic"].items())
        caught_up = backlog["caught_up_in_s"]
        print(
            f"  worker     {backlog['events_behind']} events behind when the load stopped "
            f"({topics}); "
            + (f"caught up in {caught_up} s" if caught_up is not None else "not caught up")
        )
    if report.get("cpu"):
        parts = ", ".join(f"{k} {v}%" for k, v in report["cpu"]["per_process"].items())
        print(
            f"  cpu        {parts}; machine busy "
            f"{report['cpu']['machine_busy_percent_of_all_cores']}% of all cores"
        )
        waiting = report["cpu"].get("waiting_for_a_cpu", {}).get("per_process")
        if waiting:
            parts = ", ".join(f"{k} {v}%" for k, v in waiting.items())
            print(f"  cpu wait   ready but waiting for a CPU: {parts} of the time")
    if report.get("adaptive") is False:
        print("  scoring    the registered model alone (NBA_ADAPTIVE off)")
    pinned = report.get("cpus")
    if pinned and any(pinned.values()):
        print(
            f"  pinned     the API and Redis on CPUs {pinned['api'] or 'any'}; the worker, "
            f"the broker and Locust on {pinned['background'] or 'any'}"
        )
