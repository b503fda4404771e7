"""``nba demo`` and ``nba loadtest`` stop the API and the worker before Redis and the
broker they use: the other way round, the worker logs connection errors while it stops."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

import nba.startup
from engine.config import load_settings
from engine.embedded import StackEndpoints
from nba.demo import runner


class RecordingStack:
    """Stands for the embedded stack; notes which children still ran when it stopped."""

    def __init__(self, children: list[subprocess.Popen[bytes]]) -> None:
        self.children = children
        self.running_at_stop: list[int] | None = None
        self.started_processes: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> StackEndpoints:
        return StackEndpoints("redis://127.0.0.1:1/0", "127.0.0.1:2")

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.running_at_stop = [c.pid for c in self.children if c.poll() is None]


@pytest.fixture
def sleepers() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        process.kill()
        process.wait()


def fake_spawn(started: list[subprocess.Popen[bytes]]) -> Any:
    def spawn(args: Sequence[str], env: Mapping[str, str], log: Path, cpus: Any = None) -> Any:
        process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        started.append(process)
        return process

    return spawn


def test_the_demo_stops_its_worker_before_the_stack(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sleepers: list[subprocess.Popen[bytes]]
) -> None:
    monkeypatch.setenv("NBA_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("NBA_API_KEYS", '{"test-admin-key": ["admin"]}')
    stack = RecordingStack(sleepers)
    monkeypatch.setattr(nba.startup, "stack_for", lambda settings: stack)
    monkeypatch.setattr(runner, "spawn", fake_spawn(sleepers))

    async def interrupted(*args: Any) -> int:
        raise KeyboardInterrupt  # Ctrl-C while the demo world streams in

    monkeypatch.setattr(runner, "seed_through_kafka", interrupted)
    assert runner.run_demo(load_settings(), 1.0, 10, 1) == 130
    assert len(sleepers) == 1  # the worker
    assert stack.running_at_stop == []  # stopped before the stack, not after


def test_the_loadtest_stops_its_processes_before_the_stack(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sleepers: list[subprocess.Popen[bytes]]
) -> None:
    import nba.processes
    from nba import loadtest

    monkeypatch.setenv("NBA_DATA_DIR", str(tmp_path))
    stack = RecordingStack(sleepers)
    monkeypatch.setattr(nba.startup, "stack_for", lambda settings: stack)
    monkeypatch.setattr(nba.processes, "spawn", fake_spawn(sleepers))

    async def stored(*args: Any) -> bool:
        raise RuntimeError("the worker did not load the demo events")

    monkeypatch.setattr(loadtest, "_store_has", stored)
    with (
        pytest.raises(RuntimeError),
        loadtest._serving(load_settings(), 1, 10, [], loadtest.CpuWatch()),
    ):
        pass
    assert len(sleepers) == 1  # the worker
    assert stack.running_at_stop == []
