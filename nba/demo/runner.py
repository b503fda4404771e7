"""``nba demo``: the whole stack on embedded defaults, seeded, trained, and driven."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import time
from types import FrameType

import httpx

from engine.config import Settings, resolve_api_keys
from models.registry import ModelRegistry
from nba.demo.seed import seed_through_kafka, train_demo_model
from nba.demo.traffic import drive
from nba.demo.world import DemoWorld
from nba.processes import child_env, nba_command, spawn, stop_all
from rules.catalogue import load_catalogue
from streams.lag import wait_for_lag_zero
from streams.worker import worker_group


def _step(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def _wait_ready(base_url: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base_url}/readyz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the API at {base_url} did not become ready in {timeout_s:.0f} s")


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run_demo(settings: Settings, duration_s: float, customers: int, concurrency: int) -> int:
    from nba.startup import stack_for

    signal.signal(signal.SIGTERM, _terminate)
    children: list[subprocess.Popen[bytes]] = []
    keys, generated = resolve_api_keys(settings)
    if generated:
        print(
            f"generated admin API key (kept in {settings.data_dir / 'admin.key'}): {generated}",
            flush=True,
        )
    api_key = next(
        k for k, scopes in keys.items() if "admin" in scopes or {"decide", "respond"} <= set(scopes)
    )
    logs = settings.data_dir / "logs"
    try:
        _step("starting Redis and the Kafka-protocol broker")
        with contextlib.ExitStack() as running:
            endpoints = running.enter_context(stack_for(settings))
            # last in, first out: the API and the worker stop before Redis and the broker
            running.callback(stop_all, children)
            _step(f"redis {endpoints.redis_url}, broker {endpoints.kafka_brokers}")
            env = child_env(
                NBA_REDIS_URL=endpoints.redis_url, NBA_KAFKA_BROKERS=endpoints.kafka_brokers
            )
            children.append(spawn(nba_command("worker"), env, logs / "worker.log"))
            _step("stream worker started; producing the demo world's CRM and clickstream events")
            world = DemoWorld(customers)
            sent = asyncio.run(
                seed_through_kafka(world, endpoints.kafka_brokers, settings.topic_prefix)
            )
            topics = [settings.topic("crm"), settings.topic("clickstream")]
            if not asyncio.run(
                wait_for_lag_zero(
                    endpoints.kafka_brokers, worker_group(settings.topic_prefix), topics
                )
            ):
                raise RuntimeError(
                    f"the worker did not load the demo events in time; see {logs / 'worker.log'}"
                )
            _step(f"{sent} events streamed into the feature store")
            catalogue = load_catalogue(settings.catalogue)
            registry = ModelRegistry(settings.model_dir)
            if registry.current() is None:
                _step("no registered model: training one on a logged history of the demo world")
                version, meta = train_demo_model(world, catalogue, registry)
                best = meta["metrics"][meta["estimator"]]
                _step(
                    f"registered {meta['estimator']} model {version} "
                    f"(log loss {best['log_loss']:.4f}, AUC {best['auc']:.3f})"
                )
            else:
                _step(f"serving registered model {registry.current()}")
            children.append(spawn(nba_command("serve"), env, logs / "serve.log"))
            base_url = f"http://{settings.host}:{settings.port}"
            _wait_ready(base_url)
            _step(f"API ready at {base_url}; driving traffic for {duration_s:.0f} s")
            views = {a.action.id: a.view for a in catalogue.actions}
            summary = asyncio.run(drive(world, views, base_url, api_key, duration_s, concurrency))
            print("\nsummary")
            for line in summary.lines():
                print("  " + line)
            return 0 if summary.decisions > 0 else 1
    except KeyboardInterrupt:
        _step("interrupted; stopping")
        return 130
    finally:
        stop_all(children)  # those still running if the stack did not start
