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
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

import httpx
import orjson

from engine.affinity import cpus_of
from engine.config import Settings
from nba.load_chart import history_series, plot, timeline_series
from nba.load_locust import run_locust
from nba.load_measures import (
    CpuWatch,
    step,
    worker_backlog,
)
from nba.load_offer import RATE_UNITS, offered_rates, users_for
from nba.load_report import ROOT, build_report, print_summary

LOCUSTFILE = ROOT / "benchmarks" / "locustfile.py"
ORJSON_OPTIONS = orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


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


@dataclass(frozen=True)
class Served:
    """The stack a load test started: where the API answers, and what the worker reads."""

    base_url: str
    brokers: str
    groups: dict[str, str]  # topic -> the consumer group reading it
    topics: dict[str, str]


@contextlib.contextmanager
def _serving(
    settings: Settings,
    workers: int,
    customers: int,
    children: list[subprocess.Popen[bytes]],
    cpu: CpuWatch,
    api_prefix: Sequence[str] = (),
) -> Iterator[Served]:
    """The whole stack as ``nba demo`` starts it; ``api_prefix`` goes before the API's
    command (``benchmarks.api_instructions`` runs it under valgrind)."""
    from engine.embedded import free_port
    from models.registry import ModelRegistry
    from nba.demo.seed import seed_through_kafka, train_demo_model
    from nba.demo.world import DemoWorld
    from nba.processes import child_env, nba_command, spawn, stop_all
    from nba.startup import stack_for
    from rules.catalogue import load_catalogue
    from streams.lag import wait_for_lag_zero
    from streams.worker import WORKER_TOPICS, reading_groups, worker_group

    logs = settings.data_dir / "logs"
    step("starting Redis and the Kafka-protocol broker (embedded unless configured)")
    stack = stack_for(settings)
    with contextlib.ExitStack() as running:
        endpoints = running.enter_context(stack)
        # last in, first out: Locust, the API and the worker stop before the stack
        running.callback(stop_all, children)
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
            step(f"the store holds the demo world already ({last} is known)")
        else:
            step(f"streaming the demo world ({customers} customers) through Kafka")
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
            step("no registered model: training one on the demo world's logged history")
            version, _ = train_demo_model(world, load_catalogue(settings.catalogue), registry)
            step(f"registered model {version}")
        port = free_port()
        serve_log = logs / "loadtest-serve.log"
        serve = spawn(
            [
                *api_prefix,
                *nba_command(
                    "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)
                ),
            ],
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
            step(f"API ready at {base_url} with {workers} worker(s); pids {pids}")
        yield Served(
            base_url,
            endpoints.kafka_brokers,
            reading_groups(settings.topic_prefix),
            {name: settings.topic(name) for name in WORKER_TOPICS},
        )


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
                served = exits.enter_context(_serving(settings, workers, customers, children, cpu))
                base_url = served.base_url
            else:
                served, base_url = None, url.rstrip("/")
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
            step(
                "offered: "
                + ", ".join(f"{k} {r:.2f} {RATE_UNITS[k]}" for k, r in rates.items())
                + f"; {sum(users.values())} Locust users; warm-up {warmup:.0f} s"
            )
            work = Path(exits.enter_context(tempfile.TemporaryDirectory(prefix="nba-loadtest-")))
            run = run_locust(
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
                cpus_of(settings.background_cpus) if settings is not None else None,
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
            if served is not None and settings is not None:  # it started the stack
                report["stream_worker"] = {
                    **worker_backlog(served.brokers, served.groups, served.topics),
                    "background_nice": settings.background_nice,
                }
                report["cpus"] = {"api": settings.api_cpus, "background": settings.background_cpus}
                report["adaptive"] = settings.adaptive
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
        step(f"wrote {json_path} and {png_path.name}")
        client = report["client"]["all"]
        ok = client["requests"] > 0 and client["failures"] == 0
        return 0 if ok and not client["failures_during_warmup"] else 1
    except KeyboardInterrupt:
        step("interrupted; stopping")
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
