"""The API's shutdown: decision log records still waiting for a pause in the decisions
are handed to the sink before it closes (engine.log_scheduling, nba.wiring)."""

from __future__ import annotations

import contextlib
from pathlib import Path

from engine.config import load_settings
from nba.wiring import build_services


async def test_waiting_records_are_built_before_the_sink_closes(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, model_dir=tmp_path / "models")
    services = build_services(settings, "redis://127.0.0.1:1/0", "127.0.0.1:1")
    closed: list[str] = []
    built: list[bool] = []
    sink = services.sink

    async def close_sink() -> None:
        closed.append("sink")

    services.on_close = [close_sink if step == sink.close else step for step in services.on_close]
    logs = services.decider.logs
    logs.build = lambda *entry: built.append(bool(closed))
    with logs.deciding():  # a decision still under way at the stop: the record waits
        logs.add([("a record",)])
        for step in services.on_close:
            with contextlib.suppress(Exception):  # the stores were never reached
                await step()
    assert built == [False] and closed == ["sink"]
