"""``nba loadtest``: the API under a known, fixed load, measured by Locust.

The load (``benchmarks/locustfile.py``) is four callers, each at a fixed offered rate
that does not depend on how fast the server answers. ``rate`` is the page-view
decisions per second (web, and the shop's screens for 10% of them); the others run
alongside at fixed shares of it:

=============  ==========================================================  ==============
caller         what                                                        offered rate
=============  ==========================================================  ==============
web            ``POST /v1/decisions``, channel web (90%) or shop (10%)     ``rate``/s
desk           call-centre decision with explain + ``GET /v1/customers``   ``rate`` × 1%
               + an accept/decline for 30% of them                         sessions/s
email          ``POST /v1/decisions/batch`` of 100 newsletter requests     ``rate`` × 10%
                                                                           decisions/s
responses      ``POST /v1/responses``: impressions, 15% clicks             ``rate`` × 10%/s
=============  ==========================================================  ==============

Without ``url`` the whole stack is started as ``nba demo`` starts it (embedded Redis and
broker unless configured, the stream worker, the demo world streamed through Kafka when
the store lacks it, a model trained when none is registered) and ``nba serve --workers
N`` on a free port; everything started is stopped at the end, also on Ctrl-C. With
``url`` the API there is measured and nothing is started.

Written to ``out_dir``: ``<UTC date-time>-loadtest.json`` (per caller and request:
requests, failures, rates, client latency percentiles; the server's decision-latency
histogram from ``/metrics`` over the measured window; CPU used per process; the machine)
and ``<UTC date-time>-loadtest.png`` (requests/s and latency percentiles over time).

Per caller, ``offered_rate`` is the schedule, ``started_rate`` the arrivals that started,
``achieved_rate`` the requests made per second; an arrival more than a second behind its
schedule is dropped (``dropped_arrivals``), which happens only when the server cannot keep
up, and ``schedule_lateness_ms`` shows how late the others started. Client latencies are
exact to 10 µs and cover the measured window (after all users were spawned); the server's
come from its ``nba_decision_seconds`` histogram (bucket bounds, interpolated).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import csv
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import orjson

from engine.config import Settings
from nba.load_chart import history_series, plot, timeline_series
from nba.load_measures import QUANTILES, CpuWatch, quantile, rounded, scrape, server_report
from nba.load_measures import step as _step

ROOT = Path(__file__).resolve().parent.parent
LOCUSTFILE = ROOT / "benchmarks" / "locustfile.py"

# The other callers' shares of the web rate (mirrored as defaults in the locustfile).
DESK_SHARE = 0.01  # agent sessions per page view
EMAIL_DECISION_SHARE = 0.1  # email decisions per page view
EMAIL_BATCH = 100  # requests per batch
RESPONSE_SHARE = 0.1  # responses per page view
# The most one simulated user is asked to keep up: its mean gap between arrivals stays
# well above the latency measured, so a user is never its own bottleneck (a response is
# answered once the broker has it, after up to 50 ms of the producer's linger).
PER_USER_RATE = {"web": 20.0, "desk": 2.0, "email": 0.5, "responses": 5.0}
# The request that counts one arrival of each caller (for the achieved rate).
MAIN_REQUESTS = {
    "web": ("web: POST /v1/decisions", "web: POST /v1/decisions (shop)"),
    "desk": ("desk: POST /v1/decisions (explain)",),
    "email": ("email: POST /v1/decisions/batch",),
    "responses": ("responses: POST /v1/responses",),
}
RATE_UNITS = {
    "web": "decisions/s",
    "desk": "sessions/s",
    "email": "batches/s",
    "responses": "responses/s",
}
ORJSON_OPTIONS = orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS


def offered_rates(rate: float) -> dict[str, float]:
    """Arrivals per second of each caller for a web rate of ``rate``."""
    return {
        "web": rate,
        "desk": rate * DESK_SHARE,
        "email": rate * EMAIL_DECISION_SHARE / EMAIL_BATCH,
        "responses": rate * RESPONSE_SHARE,
    }


def users_for(rates: Mapping[str, float]) -> dict[str, int]:
    return {k: max(1, math.ceil(r / PER_USER_RATE[k])) if r > 0 else 0 for k, r in rates.items()}


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


# ---- Locust -------------------------------------------------------------------------------


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


def _run_locust(
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
    process = spawn(command, env, log)
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
                _step(f"all users spawned; measuring for {duration:.0f} s")
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


# ---- the report -------------------------------------------------------------------------


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
    if report.get("cpu"):
        parts = ", ".join(f"{k} {v}%" for k, v in report["cpu"]["per_process"].items())
        print(
            f"  cpu        {parts}; machine busy "
            f"{report['cpu']['machine_busy_percent_of_all_cores']}% of all cores"
        )


# ---- the stack ------------------------------------------------------------------------------


def _pick_key(keys: Mapping[str, list[str]]) -> str | None:
    for key, scopes in keys.items():
        if "admin" in scopes or {"decide", "respond", "read"} <= set(scopes):
            return key
    return None


def _wait_ready(base_url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 90.0
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the API stopped at start-up; see {log}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base_url}/readyz", timeout=1.0).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"the API at {base_url} did not become ready; see {log}")


async def _store_has(redis_url: str, customer_id: str) -> bool:
    from feature_store.redis_store import RedisFeatureStore

    store = RedisFeatureStore.from_url(redis_url)
    try:
        return (await store.fetch(customer_id)).known
    finally:
        await store.close()


@contextlib.contextmanager
def _serving(
    settings: Settings,
    workers: int,
    customers: int,
    children: list[subprocess.Popen[bytes]],
    cpu: CpuWatch,
) -> Iterator[str]:
    """The whole stack as ``nba demo`` starts it; yields the API's base URL."""
    from engine.embedded import free_port
    from models.registry import ModelRegistry
    from nba.cli import _stack
    from nba.demo.seed import seed_through_kafka, train_demo_model
    from nba.demo.world import DemoWorld
    from nba.processes import child_env, nba_command, spawn
    from rules.catalogue import load_catalogue
    from streams.lag import wait_for_lag_zero
    from streams.worker import worker_group

    logs = settings.data_dir / "logs"
    _step("starting Redis and the Kafka-protocol broker (embedded unless configured)")
    stack = _stack(settings)
    with stack as endpoints:
        for process in stack.started_processes:
            argv = process.args if isinstance(process.args, list) else [process.args]
            cpu.roots["redis" if "redis" in Path(str(argv[0])).name else "broker"] = process.pid
        env = child_env(
            NBA_REDIS_URL=endpoints.redis_url, NBA_KAFKA_BROKERS=endpoints.kafka_brokers
        )
        worker = spawn(nba_command("worker"), env, logs / "loadtest-worker.log")
        children.append(worker)
        cpu.roots["stream worker"] = worker.pid
        world = DemoWorld(customers)
        last = world.customers[-1].customer_id
        if asyncio.run(_store_has(endpoints.redis_url, last)):
            _step(f"the store holds the demo world already ({last} is known)")
        else:
            _step(f"streaming the demo world ({customers} customers) through Kafka")
            asyncio.run(seed_through_kafka(world, endpoints.kafka_brokers, settings.topic_prefix))
            topics = [settings.topic("crm"), settings.topic("clickstream")]
            if not asyncio.run(
                wait_for_lag_zero(
                    endpoints.kafka_brokers, worker_group(settings.topic_prefix), topics
                )
            ):
                raise RuntimeError(
                    f"the worker did not load the demo events; see {logs / 'loadtest-worker.log'}"
                )
        registry = ModelRegistry(settings.model_dir)
        if registry.current() is None:
            _step("no registered model: training one on the demo world's logged history")
            version, _ = train_demo_model(world, load_catalogue(settings.catalogue), registry)
            _step(f"registered model {version}")
        port = free_port()
        serve_log = logs / "loadtest-serve.log"
        serve = spawn(
            nba_command(
                "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)
            ),
            env,
            serve_log,
        )
        children.append(serve)
        cpu.roots["api"] = serve.pid
        base_url = f"http://127.0.0.1:{port}"
        _wait_ready(base_url, serve, serve_log)
        with contextlib.suppress(Exception):
            import psutil

            pids = [serve.pid] + [p.pid for p in psutil.Process(serve.pid).children(True)]
            _step(f"API ready at {base_url} with {workers} worker(s); pids {pids}")
        yield base_url


# ---- entry point ---------------------------------------------------------------------------


def run_loadtest(
    rate: float,
    duration: float,
    workers: int,
    out_dir: Path,
    *,
    url: str | None = None,
    api_key: str | None = None,
    settings: Settings | None = None,
    warmup: float = 5.0,
    customers: int = 3000,
    locust_processes: int = 1,
    locustfile: Path = LOCUSTFILE,
    caller_rates: Mapping[str, float] | None = None,
) -> int:
    """Drive the API at ``rate`` web decisions/s (the other callers alongside) for
    ``duration`` seconds after ``warmup`` seconds of ramp-up; write the JSON report and
    the PNG into ``out_dir``. ``caller_rates`` overrides the arrivals/s of some callers
    (``desk``, ``email`` in batches, ``responses``; 0 leaves one out). Returns 0 when every
    request succeeded, 1 when some failed or none was made, 130 when interrupted."""
    if rate <= 0 or duration <= 0 or workers < 1:
        raise ValueError("rate and duration must be positive, workers at least 1")
    unknown = set(caller_rates or {}) - set(RATE_UNITS)
    if unknown:
        raise ValueError(f"unknown callers {sorted(unknown)}; known: {sorted(RATE_UNITS)}")
    warmup = max(warmup, 1.0)
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if in_main else None
    children: list[subprocess.Popen[bytes]] = []
    cpu = CpuWatch()
    rates = {**offered_rates(rate), **(caller_rates or {}), "web": rate}
    users = users_for(rates)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    try:
        with contextlib.ExitStack() as exits:
            if url is None:
                from engine.config import load_settings, resolve_api_keys

                settings = settings or load_settings()
                keys, generated = resolve_api_keys(settings)
                if generated:
                    print(f"generated admin API key (kept in {settings.data_dir / 'admin.key'})")
                api_key = api_key or _pick_key(keys)
                base_url = exits.enter_context(
                    _serving(settings, workers, customers, children, cpu)
                )
            else:
                base_url = url.rstrip("/")
                api_key = (
                    api_key or os.environ.get("NBA_LOADTEST_API_KEY") or _configured_key(settings)
                )
            if not api_key:
                print(
                    "nba loadtest: no API key with the decide, respond and read scopes "
                    "(configure NBA_API_KEYS or set NBA_LOADTEST_API_KEY)",
                    file=sys.stderr,
                )
                return 2
            _step(
                "offered: "
                + ", ".join(f"{k} {r:.2f} {RATE_UNITS[k]}" for k, r in rates.items())
                + f"; {sum(users.values())} Locust users; warm-up {warmup:.0f} s"
            )
            work = Path(exits.enter_context(tempfile.TemporaryDirectory(prefix="nba-loadtest-")))
            run = _run_locust(
                locustfile,
                base_url,
                api_key,
                rates,
                users,
                customers,
                warmup,
                duration,
                locust_processes,
                work,
                cpu,
                children,
            )
            if not run.stats:
                print(run.log_tail, file=sys.stderr)
                raise RuntimeError("Locust wrote no statistics")
            report = build_report(
                run,
                rate,
                rates,
                users,
                duration,
                warmup,
                workers if url is None else None,
                base_url,
                url is None,
            )
        report["started_at"] = stamp
        out_dir.mkdir(parents=True, exist_ok=True)
        json_path = out_dir / f"{stamp}-loadtest.json"
        png_path = out_dir / f"{stamp}-loadtest.png"
        report["files"] = {"json": json_path.name, "png": png_path.name}
        series = timeline_series(run.details)
        if not series.rates:
            series = history_series(run.history)
        title = (
            f"nba loadtest {stamp}: web {rate:g}/s offered, "
            f"{'API workers ' + str(workers) if url is None else base_url}, "
            f"{os.cpu_count()} CPUs (grey: warm-up)"
        )
        plot(series, png_path, title)
        report["timeline"] = {
            "source": series.source,
            "spawning_completed_at_s": series.warmup_end,
            "requests_per_s": series.rates.get("all", {}),
            "web_decisions_p99_ms": series.latency.get("web decisions p99", {}),
        }
        json_path.write_bytes(orjson.dumps(report, option=ORJSON_OPTIONS) + b"\n")
        print_summary(report)
        _step(f"wrote {json_path} and {png_path.name}")
        client = report["client"]["all"]
        ok = client["requests"] > 0 and client["failures"] == 0
        return 0 if ok and not client["failures_during_warmup"] else 1
    except KeyboardInterrupt:
        _step("interrupted; stopping")
        return 130
    finally:
        from nba.processes import stop

        for child in reversed(children):
            stop(child)
        if in_main and previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _configured_key(settings: Settings | None) -> str | None:
    """A configured key for an API started elsewhere; never a newly generated one."""
    from engine.config import ConfigError, load_settings

    if settings is None:
        try:
            settings = load_settings()
        except ConfigError:
            return None
    if settings.api_keys:
        return _pick_key(settings.api_keys)
    path = settings.data_dir / "admin.key"
    return path.read_text().strip() if path.exists() else None
