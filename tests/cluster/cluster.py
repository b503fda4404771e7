"""A local Redis Cluster of three masters on loopback, for the integration tests.

The cluster is formed from Python (``CLUSTER ADDSLOTS``, ``SET-CONFIG-EPOCH``, ``MEET``)
rather than with ``redis-cli --cluster create``: no dependency on ``redis-cli`` or its
version, and no fixed one-second waits. Every server runs in a directory under the
session's tmp dir, keeps no data on disk, gets SIGTERM if the test process dies, and is
stopped when the pytest session ends.
"""

from __future__ import annotations

import ctypes
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import pytest
import redis

from engine.embedded import LOOPBACK, find_redis_server

SLOTS = 16384
BUS_OFFSET = 10000  # Redis 6.2 has no ``cluster-port``: the bus listens on port + 10000
STOP_GRACE_S = 5.0
_STASH = pytest.StashKey["LocalCluster"]()


@dataclass
class LocalCluster:
    """Masters on ``ports``; ``url`` points at the first, as ``NBA_REDIS_URL`` would."""

    directory: Path
    ports: list[int] = field(default_factory=list)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    started_in_s: float = 0.0

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.ports[0]}/0"

    def node(self, port: int) -> redis.Redis:
        return redis.Redis(host=LOOPBACK, port=port, socket_timeout=5.0)

    def start(self, masters: int = 3, timeout: float = 30.0) -> LocalCluster:
        began = time.monotonic()
        deadline = began + timeout
        binary = find_redis_server()
        try:
            for _ in range(masters):
                self._launch(binary, deadline)
            self._form(deadline)
        except BaseException:
            self.stop()
            raise
        self.started_in_s = time.monotonic() - began
        return self

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(STOP_GRACE_S)

    def _launch(self, binary: str, deadline: float) -> None:
        for _attempt in range(3):  # another process may take a free port before we bind it
            port = _free_cluster_port()
            directory = self.directory / str(port)
            directory.mkdir(parents=True)
            log = directory / "redis.log"
            process = subprocess.Popen(
                _argv(binary, port, directory, log),
                cwd=directory,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                preexec_fn=_die_with_parent(),
                start_new_session=True,
            )
            self.processes.append(process)
            _wait(partial(_exited_or_pings, process, port), deadline)
            if process.poll() is None and _pings(port):
                self.ports.append(port)
                return
            log_tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            if "already in use" not in log_tail:
                raise RuntimeError(f"redis-server on port {port} did not start:\n{log_tail}")
        raise RuntimeError("no free port pair for a cluster node after 3 attempts")

    def _form(self, deadline: float) -> None:
        """Split the slots evenly, give each master its own epoch, and introduce them.

        A fresh master reports ``cluster_state:ok`` no sooner than 2 s after it started
        (Redis's ``CLUSTER_WRITABLE_DELAY``): that is most of the start-up time.
        """
        count = len(self.ports)
        for n, port in enumerate(self.ports):
            first, last = n * SLOTS // count, (n + 1) * SLOTS // count - 1
            with self.node(port) as client:
                client.execute_command("CLUSTER ADDSLOTS", *range(first, last + 1))
                client.execute_command("CLUSTER SET-CONFIG-EPOCH", n + 1)
        for n, port in enumerate(self.ports):  # every pair meets: no wait for gossip
            with self.node(port) as client:
                for other in self.ports[n + 1 :]:
                    client.execute_command("CLUSTER MEET", LOOPBACK, other)
        if not _wait(lambda: all(self._ready(port) for port in self.ports), deadline):
            raise RuntimeError(
                "the cluster did not reach cluster_state:ok: "
                + "; ".join(str(self._info(port)) for port in self.ports)
            )

    def _info(self, port: int) -> dict[str, str]:
        with self.node(port) as client:
            info = client.execute_command("CLUSTER INFO")  # parsed into a dict by redis-py
        return {str(k): str(v) for k, v in info.items()}

    def _ready(self, port: int) -> bool:
        info = self._info(port)
        return (
            info.get("cluster_state") == "ok"
            and info.get("cluster_known_nodes") == str(len(self.ports))
            and info.get("cluster_slots_ok") == str(SLOTS)
        )


def local_cluster(request: pytest.FixtureRequest) -> LocalCluster:
    """The session's cluster: started on first use, stopped when the session ends.

    Kept in the config's stash, so the cluster tests and the contract suite (which
    cannot see ``tests/cluster/conftest.py``) share one cluster.
    """
    config = request.config
    cluster = config.stash.get(_STASH, None)
    if cluster is None:
        factory: pytest.TempPathFactory = request.getfixturevalue("tmp_path_factory")
        cluster = LocalCluster(factory.mktemp("redis-cluster"))
        config.add_cleanup(cluster.stop)
        cluster.start()
        config.stash[_STASH] = cluster
    return cluster


def _argv(binary: str, port: int, directory: Path, log: Path) -> list[str]:
    argv = [
        binary,
        "--port", str(port),
        "--bind", LOOPBACK,
        "--dir", str(directory),
        "--cluster-enabled", "yes",
        "--cluster-config-file", "nodes.conf",
        "--cluster-node-timeout", "5000",
        "--save", "",
        "--appendonly", "no",
        "--daemonize", "no",
        "--logfile", str(log),
    ]  # fmt: skip
    return argv


def _free_cluster_port() -> int:
    """A free loopback port whose cluster-bus port (port + 10000) is free too."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((LOOPBACK, 0))
            port: int = sock.getsockname()[1]
        if port + BUS_OFFSET > 65535:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as bus:
            try:
                bus.bind((LOOPBACK, port + BUS_OFFSET))
            except OSError:
                continue
        return port


def _exited_or_pings(process: subprocess.Popen[bytes], port: int) -> bool:
    return process.poll() is not None or _pings(port)


def _pings(port: int) -> bool:
    try:
        with redis.Redis(host=LOOPBACK, port=port, socket_timeout=0.5) as client:
            return bool(client.ping())
    except redis.RedisError:
        return False


def _wait(done: Callable[[], bool], deadline: float) -> bool:
    while not done():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn``: the kernel sends SIGTERM to the server if pytest dies."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def preexec() -> None:
        prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG

    return preexec
