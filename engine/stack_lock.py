"""Which process runs the embedded servers of a data folder, and where they listen.

``nba serve`` and ``nba worker`` started apart on embedded defaults must share one Redis
and one broker: two Redis servers on one folder would write one append-only file, and
the worker's events would never reach the API's store. The process that starts the
embedded servers holds an exclusive ``flock`` on ``<data_dir>/stack.lock`` for as long
as it runs and writes its pid and the servers' addresses into it; the kernel drops the
lock when that process ends, however it ends (a SIGKILL too), so a lock file left behind
never blocks a later start. A second process finds the lock taken and reads where the
servers are (:func:`claim`).

>>> import tempfile
>>> folder = Path(tempfile.mkdtemp())
>>> owner = claim(folder, deadline=time.monotonic() + 1)
>>> owner.owned
True
>>> owner.publish("redis://127.0.0.1:6390/0", None)
>>> other = claim(folder, deadline=time.monotonic() + 1)
>>> (other.owned, other.redis_url, other.kafka_brokers, other.pid == os.getpid())
(False, 'redis://127.0.0.1:6390/0', None, True)
>>> owner.release()
>>> claim(folder, deadline=time.monotonic() + 1).owned  # free again
True
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.stack_checks import EmbeddedStackError

LOCK_NAME = "stack.lock"
_POLL_S = 0.1


@dataclass
class StackLock:
    """Ours (``owned``: we start the servers), or another live process's stack."""

    path: Path
    owned: bool
    pid: int = 0
    redis_url: str | None = None
    kafka_brokers: str | None = None
    _fd: int | None = None

    def publish(self, redis_url: str | None, kafka_brokers: str | None) -> None:
        """Write our pid and the addresses of the servers we started (``None``: not
        started by us) for the processes that come after."""
        assert self._fd is not None, "only the owner publishes"
        record = {"pid": os.getpid(), "redis_url": redis_url, "kafka_brokers": kafka_brokers}
        data = json.dumps(record).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)
        self.pid, self.redis_url, self.kafka_brokers = os.getpid(), redis_url, kafka_brokers

    def release(self) -> None:
        """Let the next process start the servers (idempotent)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)  # closing drops the flock


def claim(data_dir: Path, deadline: float) -> StackLock:
    """The lock of ``data_dir``'s embedded servers: taken (ours to start them), or the
    running owner's pid and addresses once it has published them (waited for until
    ``deadline``, a :func:`time.monotonic` time, while it is still starting)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / LOCK_NAME
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            record = _read(fd)
            os.close(fd)
        else:
            return StackLock(path, owned=True, _fd=fd)
        if record is not None and _alive(int(record.get("pid") or 0)):
            return StackLock(
                path,
                owned=False,
                pid=int(record["pid"]),
                redis_url=_text(record.get("redis_url")),
                kafka_brokers=_text(record.get("kafka_brokers")),
            )
        if time.monotonic() > deadline:
            raise EmbeddedStackError(
                f"another process holds {path} but has not said where its embedded servers "
                "listen; set NBA_REDIS_URL and NBA_KAFKA_BROKERS, or stop it"
            )
        time.sleep(_POLL_S)  # the owner is still starting its servers


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _read(fd: int) -> dict[str, Any] | None:
    try:
        found = json.loads(os.pread(fd, 4096, 0) or b"null")
    except (OSError, ValueError):
        return None  # being written
    return found if isinstance(found, dict) else None


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
