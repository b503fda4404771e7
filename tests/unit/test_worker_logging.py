"""The stream worker's log level holds once it runs: no log record per library debug call."""

from __future__ import annotations

import logging
from pathlib import Path

import faust
import pytest

from streams.transport import QuietWorker, WorkerApp


@pytest.fixture
def app(tmp_path: Path) -> faust.App:
    return WorkerApp(
        "log-test", broker="kafka://127.0.0.1:1", datadir=str(tmp_path), web_enabled=False
    )


def configured_root(level: int) -> logging.Logger:
    """A stand-in for the root logger as faust's logging set-up leaves it."""
    root = logging.Logger("root-under-test", level)
    root.addHandler(logging.NullHandler())
    return root


@pytest.mark.parametrize(
    ("worker_class", "debug_records"), [(faust.Worker, True), (QuietWorker, False)]
)
def test_only_the_quiet_worker_keeps_the_configured_level(
    app: faust.App, worker_class: type[faust.Worker], debug_records: bool
) -> None:
    worker = worker_class(app, loglevel="WARNING", quiet=True)
    root = configured_root(logging.WARNING)
    worker.on_setup_root_logger(root, logging.WARNING)
    # faust's spinner lowers the root to DEBUG: every library debug call builds a record
    assert root.isEnabledFor(logging.DEBUG) is debug_records
    assert len(root.handlers) == (2 if debug_records else 1)
