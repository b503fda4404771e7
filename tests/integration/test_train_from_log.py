"""Training from the engine's own decision log joined with the responses."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid

import httpx
import orjson
import pytest

from nba.stream_log import read_history
from tests.conftest import ROOT, Running, auth

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_nba_train_from_stream_learns_from_logged_decisions(running: Running, tmp_path) -> None:
    clicked: set[tuple[str, str]] = set()
    with httpx.Client(
        base_url=running.base_url, headers=auth("test-admin-key-0001"), timeout=10
    ) as client:
        for i in range(80):
            customer = f"tl-{uuid.uuid4().hex[:8]}"
            decision = client.post(
                "/v1/decisions", json={"customer_id": customer, "channel": "call_centre"}
            ).json()
            for action in decision["actions"]:
                if i % 3 == 0:
                    client.post(
                        "/v1/responses",
                        json={
                            "decision_id": decision["decision_id"],
                            "action_id": action["action_id"],
                            "customer_id": customer,
                            "outcome": "click",
                        },
                    )
                    clicked.add((decision["decision_id"], action["action_id"]))
    assert clicked
    deadline = time.monotonic() + 30
    while True:  # the decision log is written in the background
        rows = read_history(running.endpoints.kafka_brokers, "it.")
        rewarded = {(r["timestamp"], r["action_id"]) for r in rows if r["reward"] > 0}
        if len(rewarded) >= len(clicked):
            break
        assert time.monotonic() < deadline, (len(rewarded), len(clicked))
        time.sleep(0.5)
    log = tmp_path / "log.jsonl"
    models = tmp_path / "models"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "nba.cli",
            "train",
            "--from-stream",
            "--write-log",
            str(log),
            "--out",
            str(models),
        ],
        env=running.env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "registered" in done.stdout
    lines = [orjson.loads(line) for line in log.read_bytes().splitlines()]
    assert {
        "timestamp",
        "customer_id",
        "channel",
        "features",
        "action_id",
        "position",
        "propensity",
        "reward",
    } <= set(lines[0])
    assert sum(line["reward"] for line in lines) >= len(clicked)
