"""NBA_API_CPUS: ``nba serve`` and every API process it starts keep to the CPUs they
are given (engine.affinity), every thread of them; each of them still accepts the
background's CPUs, which it may not run on itself."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import Running, auth
from tests.reliability._support import api_env, nba, stop, wait_ready

pytestmark = pytest.mark.integration


def test_every_api_process_keeps_to_its_cpus(running: Running, tmp_path: Path) -> None:
    first, last = min(os.sched_getaffinity(0)), max(os.sched_getaffinity(0))
    env = api_env(  # each API process reads both, pinned to the first already
        running, tmp_path / "data", NBA_API_CPUS=str(first), NBA_BACKGROUND_CPUS=str(last)
    )
    log = tmp_path / "serve.log"
    process = nba(["serve", "--workers", "2"], env, log)
    try:
        base_url = f"http://127.0.0.1:{env['NBA_PORT']}"
        wait_ready(base_url, process, log)
        decided = httpx.post(
            f"{base_url}/v1/decisions",
            json={"customer_id": "cpus-1", "channel": "web"},
            headers=auth("test-admin-key-0001"),
            timeout=5,
        )
        assert decided.status_code == 200
        servers = [psutil.Process(process.pid), *psutil.Process(process.pid).children(True)]
        assert len(servers) >= 3  # the supervisor and its two API processes (and helpers)
        for server in servers:
            for thread in server.threads():
                assert os.sched_getaffinity(thread.id) == {first}, (server.cmdline(), thread)
    finally:
        stop(process)
