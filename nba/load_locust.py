"""Running Locust headless for ``nba loadtest`` and reading back what it measured."""

from __future__ import annotations

import csv
import math
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from nba.load_measures import CpuWatch, scrape, step
from nba.load_offer import EMAIL_BATCH


@dataclass
class LocustRun:
    stats: list[dict[str, str]]
    history: list[dict[str, str]]
    failures: list[dict[str, str]]
    details: list[dict[str, Any]]
    server_before: dict[str, Any] | None
    server_after: dict[str, Any] | None
    cpu: dict[str, Any]
    scrape_seconds: dict[str, float]
    returncode: int
    log_tail: str


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def _locust_command(
    locustfile: Path,
    base_url: str,
    users: int,
    warmup: float,
    duration: float,
    csv_prefix: Path,
    processes: int,
) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(locustfile),
        "--headless",
        "--host",
        base_url,
        "-u",
        str(users),
        "-r",
        f"{users / warmup:.3f}",
        "-t",
        f"{math.ceil(warmup + duration)}s",
        "--reset-stats",
        "--csv",
        str(csv_prefix),
        "--csv-full-history",
        "--only-summary",
        "--stop-timeout",
        "5",
        "--loglevel",
        "WARNING",
        "--exit-code-on-error",
        "0",
    ]
    if processes > 1:
        command += ["--processes", str(processes)]
    return command


def run_locust(
    locustfile: Path,
    base_url: str,
    api_key: str,
    rates: Mapping[str, float],
    users: Mapping[str, int],
    customers: int,
    warmup: float,
    duration: float,
    processes: int,
    work: Path,
    cpu: CpuWatch,
    children: list[subprocess.Popen[bytes]],
    cpus: frozenset[int] | None = None,
) -> LocustRun:
    from nba.processes import child_env, spawn, stop

    detail_dir = work / "detail"
    env = child_env(
        NBA_LOADTEST_HOST=base_url,
        NBA_LOADTEST_API_KEY=api_key,
        NBA_LOADTEST_WEB_RATE=repr(rates["web"]),
        NBA_LOADTEST_DESK_RATE=repr(rates["desk"]),
        NBA_LOADTEST_EMAIL_RATE=repr(rates["email"]),
        NBA_LOADTEST_RESPONSE_RATE=repr(rates["responses"]),
        NBA_LOADTEST_EMAIL_BATCH=str(EMAIL_BATCH),
        NBA_LOADTEST_CUSTOMERS=str(customers),
        NBA_LOADTEST_DETAIL_DIR=str(detail_dir),
        **{f"NBA_LOADTEST_{k.upper()}_USERS": str(n) for k, n in users.items()},
    )
    prefix = work / "locust"
    log = work / "locust.log"
    command = _locust_command(
        locustfile, base_url, sum(users.values()), warmup, duration, prefix, processes
    )
    process = spawn(command, env, log, cpus)  # the background's CPUs, not the API's
    children.append(process)
    cpu.roots["locust"] = process.pid
    before = after = None
    spawned = stopping = False
    scrape_s: dict[str, float] = {}
    cpu_report: dict[str, Any] = {}
    started = time.monotonic()
    deadline = started + warmup + duration + 120.0
    try:
        while process.poll() is None:
            if not spawned and any(detail_dir.glob("spawned-*")):
                spawned = True
                cpu.begin()
                step(f"all users spawned; measuring for {duration:.0f} s")
                t = time.monotonic()
                before = scrape(base_url)
                scrape_s["before"] = round(time.monotonic() - t, 3)
            if spawned and not stopping and any(detail_dir.glob("stopping-*")):
                stopping = True
                cpu_report = cpu.end()
                t = time.monotonic()
                after = scrape(base_url)
                scrape_s["after"] = round(time.monotonic() - t, 3)
            if time.monotonic() > deadline:
                raise RuntimeError(f"Locust did not finish in time; see {log}")
            time.sleep(0.05)
    finally:
        stop(process)
    if spawned and not stopping:  # Locust ended without its stopping mark
        cpu_report = cpu.end()
        after = scrape(base_url)
    details = [orjson.loads(p.read_bytes()) for p in sorted(detail_dir.glob("detail-*.json"))]
    tail = log.read_text(errors="replace")[-4000:] if log.exists() else ""
    return LocustRun(
        stats=_read_csv(Path(f"{prefix}_stats.csv")),
        history=_read_csv(Path(f"{prefix}_stats_history.csv")),
        failures=_read_csv(Path(f"{prefix}_failures.csv")),
        details=details,
        server_before=before,
        server_after=after,
        cpu=cpu_report,
        scrape_seconds=scrape_s,
        returncode=process.returncode,
        log_tail=tail,
    )
