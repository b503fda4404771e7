"""The email path (issue: channels and load): ``POST /v1/decisions/batch`` of 1,000
newsletter recipients, over HTTP, to one API process of the demo stack.

"Per core" is decisions per CPU-second of the API process (user + system), measured
with psutil over the batches; the wall-clock rate is recorded beside it. Each recipient
is decided once (a second pass would find the weekly email cap used up and cost less).

Run: ``.venv/bin/python -m pytest benchmarks/test_bench_batch.py -m benchmark -s``
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import httpx
import numpy as np
import orjson
import psutil
import pytest

from benchmarks.conftest import record
from engine.config import load_settings
from nba.load_measures import CpuWatch
from nba.loadtest import _serving
from nba.processes import stop

pytestmark = pytest.mark.benchmark
BATCH = 1000
CUSTOMERS = 8000
KEY = "bench-batch-key-0001"


def cpu_seconds(tree: list[psutil.Process]) -> float:
    return sum(sum(p.cpu_times()[:2]) for p in tree)


def test_email_batches_per_core(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBA_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("NBA_API_KEYS", orjson.dumps({KEY: ["admin"]}).decode())
    for name in ("NBA_REDIS_URL", "NBA_KAFKA_BROKERS"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    children: list[subprocess.Popen[bytes]] = []
    try:
        with _serving(settings, 1, CUSTOMERS, children, CpuWatch()) as served:
            base_url = served.base_url
            api = psutil.Process(children[-1].pid)
            tree = [api, *api.children(recursive=True)]
            headers = {"Authorization": f"Bearer {KEY}"}
            batches = [
                [
                    {
                        "customer_id": f"c-{n * BATCH + i:05d}",
                        "channel": "email",
                        "placement": "newsletter_block",
                        "limit": 1,
                    }
                    for i in range(BATCH)
                ]
                for n in range(CUSTOMERS // BATCH)
            ]
            with httpx.Client(base_url=base_url, headers=headers, timeout=60) as client:
                client.post("/v1/decisions/batch", json={"requests": batches[0][:50]})  # warm
                started = time.perf_counter()
                chosen = fallbacks = 0
                walls, cpus = [], []
                for batch in batches[1:]:
                    t0, cpu0 = time.perf_counter(), cpu_seconds(tree)
                    response = client.post("/v1/decisions/batch", json={"requests": batch})
                    walls.append(time.perf_counter() - t0)
                    cpus.append(cpu_seconds(tree) - cpu0)
                    assert response.status_code == 200, response.text
                    decisions = response.json()["decisions"]
                    assert len(decisions) == BATCH
                    chosen += sum(1 for d in decisions if d.get("actions"))
                    fallbacks += sum(1 for d in decisions if d.get("fallback"))
                wall = time.perf_counter() - started
    finally:
        for child in reversed(children):
            stop(child)
    decided = BATCH * (len(batches) - 1)
    figures = record(  # per batch: API CPU µs per decision
        "email_batch_1000_api_cpu_per_decision",
        [c / BATCH for c in cpus],
        target_p50_us=200,  # 5,000 decisions per CPU-second
        decisions=decided,
        decisions_with_an_action=chosen,
        fallbacks=fallbacks,
        decisions_per_cpu_s=decided / sum(cpus),
        decisions_per_s_wall=decided / wall,
        batch_wall_p50_ms=float(np.median(walls)) * 1000,
        cpus=os.cpu_count(),
    )
    print(figures)
    assert fallbacks == 0 and chosen > decided // 2
