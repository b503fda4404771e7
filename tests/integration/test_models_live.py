"""A model registered while the API runs is served without a restart."""

from __future__ import annotations

import time

import httpx
import pytest

from engine.config import DEMO_CATALOGUE
from models.registry import ModelRegistry
from nba.demo.seed import logged_history, train_demo_model
from nba.demo.world import DemoWorld
from rules.catalogue import load_catalogue
from tests.conftest import Running, auth

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_a_model_registered_later_is_picked_up_without_restart(running: Running) -> None:
    before = httpx.get(f"{running.base_url}/readyz").json()["model"]
    assert before == "adaptive"  # cold start: no model registered, the adaptive model decides
    registry = ModelRegistry(running.data_dir / "models")
    world = DemoWorld(customers=300, seed=3)
    version, _ = train_demo_model(world, load_catalogue(DEMO_CATALOGUE), registry, rows=4000)
    deadline = time.monotonic() + 20
    while httpx.get(f"{running.base_url}/readyz").json()["model"] != f"{version}+adaptive":
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
    assert reply.json()["model_version"] == f"{version}+adaptive"


def test_promotion_under_load_fails_no_request_and_a_challenger_is_logged(running: Running) -> None:
    import asyncio
    import threading

    import orjson
    from aiokafka import AIOKafkaConsumer

    from models.training import train_model

    registry = ModelRegistry(running.data_dir / "models")
    world = DemoWorld(customers=200, seed=5)
    history = logged_history(world, load_catalogue(DEMO_CATALOGUE), rows=3000)
    first, _ = train_model(history, registry, candidates=("logistic",), promote=True)
    second, _ = train_model(history, registry, candidates=("logistic",), promote=False)
    registry.set_challenger(second)
    statuses: list[int] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(
            base_url=running.base_url, headers=auth("test-admin-key-0001"), timeout=5
        ) as client:
            while not stop.is_set():
                reply = client.post(
                    "/v1/decisions", json={"customer_id": "swap", "channel": "call_centre"}
                )
                statuses.append(reply.status_code)

    worker = threading.Thread(target=load)
    worker.start()
    try:
        for version in (second, first, second):
            time.sleep(1.5)
            registry.promote(version)
        time.sleep(1.5)
        registry.set_challenger(first)
        time.sleep(2.0)
    finally:
        stop.set()
        worker.join()
    assert statuses and set(statuses) == {200}, set(statuses)
    assert httpx.get(f"{running.base_url}/readyz").json()["model"] == f"{second}+adaptive"

    async def challenger_logged() -> bool:
        consumer = AIOKafkaConsumer(
            "it.decisions",
            bootstrap_servers=running.endpoints.kafka_brokers,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    for record in records:
                        shadow = orjson.loads(record.value)["candidates"].get("challenger")
                        if shadow and shadow["version"] == first:
                            return len(shadow["propensity"]) > 0
        finally:
            await consumer.stop()
        return False

    assert asyncio.run(challenger_logged())
