"""Child processes that never outlive the command that started them."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from engine.spawning import child_setup


def spawn(
    args: Sequence[str],
    env: Mapping[str, str],
    log_path: Path,
    cpus: frozenset[int] | None = None,
) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            list(args),
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=child_setup(os.getpid(), cpus=cpus),
        )


def stop(process: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
    """SIGTERM, wait, then SIGKILL; safe to call twice."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        process.wait(5)


def stop_all(processes: Sequence[subprocess.Popen[bytes]]) -> None:
    """Stop the newest first: the API before the worker, both before the servers (Redis,
    the broker) they use, which their starter stops after this."""
    for process in reversed(processes):
        stop(process)


def nba_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "nba.cli", *args]


def child_env(**overrides: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(overrides)
    return env
