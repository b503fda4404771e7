"""A model registered while the API runs is served without a restart."""

from __future__ import annotations

import time

import httpx
import pytest

from engine.config import DEMO_CATALOGUE
from models.registry import ModelRegistry
from nba.demo.seed import train_demo_model
from nba.demo.world import DemoWorld
from rules.catalogue import load_catalogue
from tests.conftest import Running, auth

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_a_model_registered_later_is_picked_up_without_restart(running: Running) -> None:
    before = httpx.get(f"{running.base_url}/readyz").json()["model"]
    assert before == "prior"  # cold start: no model registered
    registry = ModelRegistry(running.data_dir / "models")
    world = DemoWorld(customers=300, seed=3)
    version, _ = train_demo_model(world, load_catalogue(DEMO_CATALOGUE), registry, rows=4000)
    deadline = time.monotonic() + 20
    while httpx.get(f"{running.base_url}/readyz").json()["model"] != version:
        assert time.monotonic() < deadline, "the promoted model was not picked up"
        time.sleep(0.2)
    body = {"customer_id": "model-probe", "channel": "call_centre"}
    reply = httpx.post(
        f"{running.base_url}/v1/decisions",
        json=body,
        headers=auth("test-admin-key-0001"),
        timeout=5,
    )
    assert reply.status_code == 200
    assert reply.json()["model_version"] == version
