"""Child processes that never outlive the process that started them.

* Every child gets ``PR_SET_PDEATHSIG = SIGTERM`` (:func:`child_setup`), so even a
  SIGKILLed parent takes its children down. The kernel sends that signal when the *thread*
  that forked the child ends, so the embedded servers are all forked from one daemon
  thread that lives as long as the process (see :class:`_Spawner`).
* The embedded servers run in their own session: a Ctrl-C in the terminal reaches only
  the parent, which can then flush to Kafka before it stops the broker
  (:mod:`engine.embedded`).
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from engine.affinity import pin_process
from engine.priority import lower_priority
from engine.stack_checks import EmbeddedStackError

__all__ = ["child_setup", "spawn_server"]


_PR_SET_PDEATHSIG = 1


class _Spawner:
    """Forks every server from one daemon thread that lives until the process ends.

    ``PR_SET_PDEATHSIG`` fires when the forking *thread* ends; started from a short-lived
    thread (``asyncio.to_thread``, a worker) the servers would die with that thread.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: queue.SimpleQueue[
            tuple[Callable[[], subprocess.Popen[bytes]], concurrent.futures.Future[Any]]
        ] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._thread_pid = 0

    def popen(
        self,
        argv: list[str],
        cwd: Path,
        log: IO[bytes],
        nice: int = 0,
        cpus: frozenset[int] | None = None,
    ) -> subprocess.Popen[bytes]:
        def job() -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                argv,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                preexec_fn=child_setup(os.getpid(), nice, cpus),
                start_new_session=True,
            )

        try:
            executable = Path(argv[0])
            if not (executable.is_file() and os.access(executable, os.X_OK)):
                raise FileNotFoundError(f"{argv[0]} is not an executable file")
            future: concurrent.futures.Future[Any] = concurrent.futures.Future()
            self._jobs.put((job, future))
            self._ensure_thread()
            process: subprocess.Popen[bytes] = future.result()
        except OSError as exc:
            raise EmbeddedStackError(f"cannot start {argv[0]}: {exc}") from exc
        return process

    def _ensure_thread(self) -> None:
        with self._lock:
            # After a fork the thread object survives but the thread does not.
            if self._thread is None or self._thread_pid != os.getpid():
                self._thread = threading.Thread(
                    target=self._run, name="nba-embedded-spawner", daemon=True
                )
                self._thread_pid = os.getpid()
                self._thread.start()

    def _run(self) -> None:
        while True:
            job, future = self._jobs.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(job())
            except BaseException as exc:
                future.set_exception(exc)


_SPAWNER = _Spawner()
# Start a server in its own session that outlives the calling thread but not this
# process; EmbeddedStackError if it cannot be started.
spawn_server = _SPAWNER.popen


def child_setup(
    parent_pid: int, nice: int = 0, cpus: frozenset[int] | None = None
) -> Callable[[], None] | None:
    """A ``preexec_fn`` asking the kernel to SIGTERM the child when its parent dies,
    lowering its priority by ``nice`` (see :mod:`engine.priority`) and keeping it on
    ``cpus`` (see :mod:`engine.affinity`); every child the project starts uses it."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong]
    prctl.restype = ctypes.c_int

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(1)
        lower_priority(nice)
        pin_process(cpus)

    return preexec
