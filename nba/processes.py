"""Child processes that never outlive the command that started them."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from engine.affinity import pin_process

_PR_SET_PDEATHSIG = 1


def _child_setup(cpus: frozenset[int] | None) -> Callable[[], None]:
    """Runs in the child before exec: the kernel sends SIGTERM when the parent dies, and
    the child keeps to ``cpus`` (None: anywhere; see :mod:`engine.affinity`)."""

    def setup() -> None:
        if sys.platform.startswith("linux"):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))
        pin_process(cpus)

    return setup


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
            preexec_fn=_child_setup(cpus),
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


def nba_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "nba.cli", *args]


def child_env(**overrides: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(overrides)
    return env
