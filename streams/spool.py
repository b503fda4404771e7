"""A local append-only spool for records the broker could not take.

While the broker is away, responses, ingested events and decision logs are appended
here (one JSON line per record, the value base64-encoded) and flushed to disk; when it
returns, the files are replayed and removed. Each process appends to a file of its
own; replaying takes a lock on the file, so a file left by a process that died is
replayed by whichever process gets to it first.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import orjson

Record = tuple[str, str, bytes]


class Spool:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self._name = f"{os.getpid()}-{time.time_ns()}"
        self._handle: IO[bytes] | None = None
        self.pending = sum(_count(p) for p in self.files())

    def _open(self) -> IO[bytes]:
        if self._handle is None:
            self._handle = (self.folder / f"{self._name}.spool").open("ab")
        return self._handle

    def append(self, records: list[Record], sync: bool = True) -> None:
        handle = self._open()
        for topic, key, value in records:
            line = {"t": topic, "k": key, "v": base64.b64encode(value).decode()}
            handle.write(orjson.dumps(line) + b"\n")
        handle.flush()
        if sync:
            os.fsync(handle.fileno())
        self.pending += len(records)

    def rotate(self) -> None:
        """New appends go to a new file, so the current one can be replayed."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        self._name = f"{os.getpid()}-{time.time_ns()}"

    def files(self) -> list[Path]:
        return sorted(self.folder.glob("*.spool"))

    @contextlib.contextmanager
    def claim(self, path: Path) -> Iterator[list[Record] | None]:
        """The records of a file, under an exclusive lock; None if another process has it."""
        try:
            handle = path.open("rb+")
        except FileNotFoundError:
            yield None
            return
        with handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield None
                return
            records = [_decode(line) for line in handle.read().splitlines() if line.strip()]
            yield records

    def done(self, path: Path, count: int) -> None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        self.pending = max(0, self.pending - count)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def _decode(line: bytes) -> Record:
    raw = orjson.loads(line)
    return raw["t"], raw["k"], base64.b64decode(raw["v"])


def _count(path: Path) -> int:
    try:
        with path.open("rb") as handle:
            return sum(1 for line in handle if line.strip())
    except FileNotFoundError:
        return 0
