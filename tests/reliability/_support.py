"""Helpers of the reliability tests: private servers on free loopback ports, producing
and reading topics, polling. Every process started here dies with the test run (SIGTERM
on parent death) and is stopped by the test that started it."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import redis
from aiokafka import AIOKafkaProducer

from engine.embedded import ensure_topics, find_redis_server, free_port
from tests.conftest import ROOT, Running

T = TypeVar("T")
LOOPBACK = "127.0.0.1"
WORLD_TOPICS = ("clickstream", "crm", "responses", "decisions", "dlq")


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG


def popen(
    argv: list[str], env: dict[str, str] | None, log: Path, cwd: Path = ROOT
) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as handle:
        return subprocess.Popen(
            argv,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=str(cwd),
            preexec_fn=_die_with_parent,
        )


def nba(
    args: list[str], env: dict[str, str], log: Path, cwd: Path = ROOT
) -> subprocess.Popen[bytes]:
    """``nba <args>`` as a subprocess, output appended to ``log``."""
    env = {**env, "PYTHONPATH": str(ROOT)}  # the checkout, whatever the working folder
    return popen([sys.executable, "-m", "nba.cli", *args], env, log, cwd)


def stop(process: subprocess.Popen[bytes], grace_s: float = 15.0) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            process.wait(grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def kill(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL and reap."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGKILL)
        process.wait(10)


def start_redis(port: int, directory: Path, *, appendonly: bool = False) -> subprocess.Popen[bytes]:
    directory.mkdir(parents=True, exist_ok=True)
    argv = [
        find_redis_server(),
        "--port", str(port),
        "--bind", LOOPBACK,
        "--dir", str(directory),
        "--save", "",
        "--appendonly", "yes" if appendonly else "no",
        "--daemonize", "no",
    ]  # fmt: skip
    process = popen(argv, None, directory / "redis.log")
    wait_redis(port, process)
    return process


def wait_redis(
    port: int, process: subprocess.Popen[bytes] | None = None, timeout_s: float = 20.0
) -> None:
    client = redis.Redis(host=LOOPBACK, port=port, socket_timeout=0.5, socket_connect_timeout=0.5)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            with contextlib.suppress(redis.RedisError):
                if client.ping():
                    return
            if process is not None and process.poll() is not None:
                raise AssertionError(f"redis-server on {port} exited with {process.returncode}")
            if time.monotonic() > deadline:
                raise AssertionError(f"redis-server on {port} did not answer")
            time.sleep(0.05)
    finally:
        client.close()


def api_env(running: Running, data_dir: Path, **overrides: str) -> dict[str, str]:
    """The session server's environment (keys, broker, Redis), on a port and data dir
    of its own; ``overrides`` replace any variable."""
    env = {
        **running.env,
        "NBA_PORT": str(free_port()),
        "NBA_DATA_DIR": str(data_dir),
        "NBA_MODEL_DIR": str(data_dir / "models"),
    }
    env.update(overrides)
    return env


def wait_ready(
    base_url: str, process: subprocess.Popen[bytes], log: Path, timeout_s: float = 60.0
) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            raise AssertionError(f"server exited: {log.read_text(errors='replace')[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base_url}/readyz", timeout=1).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise AssertionError(f"{base_url} not ready: {log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.2)


@contextlib.contextmanager
def api_server(env: dict[str, str], log: Path) -> Iterator[str]:
    """``nba serve`` with ``env``; yields its base URL; stopped on exit."""
    process = nba(["serve"], env, log)
    base_url = f"http://{LOOPBACK}:{env['NBA_PORT']}"
    try:
        wait_ready(base_url, process, log)
        yield base_url
    finally:
        stop(process)


def world_topics(brokers: str, prefix: str) -> list[str]:
    names = [f"{prefix}{name}" for name in WORLD_TOPICS]
    ensure_topics(brokers, names, partitions=4)
    return names


def run(coro_factory: Callable[[], Any]) -> Any:
    """Run a coroutine on a fresh loop in this thread (the tests are synchronous)."""
    return asyncio.run(coro_factory())


async def produce_async(
    brokers: str, topic: str, records: Iterable[tuple[bytes | None, bytes | None]]
) -> int:
    """Send (key, value) records in order and wait until the broker has every one."""
    producer = AIOKafkaProducer(
        bootstrap_servers=brokers, linger_ms=5, max_request_size=4 * 1024 * 1024
    )
    await producer.start()
    sent = 0
    try:
        futures = []
        for key, value in records:
            futures.append(await producer.send(topic, value, key=key))
            sent += 1
            if len(futures) >= 500:
                await asyncio.gather(*futures)
                futures = []
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return sent


def produce(brokers: str, topic: str, records: Iterable[tuple[bytes | None, bytes | None]]) -> int:
    return int(run(lambda: produce_async(brokers, topic, records)))


def worker_env(running: Running, data_dir: Path, prefix: str) -> dict[str, str]:
    return api_env(running, data_dir, NBA_TOPIC_PREFIX=prefix)


def tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


def environment_without(env: dict[str, str], *names: str) -> dict[str, str]:
    return {k: v for k, v in env.items() if k not in names}


def service_actions(base_url: str, key: str = "test-admin-key-0001") -> set[str]:
    """Ids of the catalogue's actions marked ``purpose: service``: the consent rule
    (nba/demo/catalogue/rules.yaml) exempts them, so a service banner (help, returns)
    is not marketing."""
    reply = httpx.get(f"{base_url}/v1/actions", headers={"Authorization": f"Bearer {key}"})
    reply.raise_for_status()
    return {
        a["id"]
        for a in reply.json()["actions"]
        if (a.get("attributes") or {}).get("purpose") == "service"
    }
