"""Load the demo world: CRM profiles and clickstream through Kafka (or straight into
the store through the same stream handlers), and the first model from a logged history."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from tqdm import tqdm

from engine.events import ClickstreamEvent, CrmEvent
from engine.ports import FeatureStore
from models.registry import ModelRegistry
from models.training import TrainingSet, train_model
from nba.demo.world import DemoWorld
from rules.catalogue import Catalogue
from streams.handlers import clickstream_writes, crm_writes


def world_events(world: DemoWorld, now: float) -> Iterable[tuple[str, dict[str, Any]]]:
    """(topic name, event) for every customer: a profile, then some page views."""
    for customer in world.customers:
        yield "crm", world.profile_event(customer, now)
        for event in world.clickstream_events(customer, now, world.rng.randint(2, 14)):
            yield "clickstream", event


async def seed_through_kafka(
    world: DemoWorld, brokers: str, prefix: str, progress: bool = True
) -> int:
    producer = AIOKafkaProducer(bootstrap_servers=brokers.split(","), linger_ms=20)
    await producer.start()
    sent = 0
    try:
        pending = []
        for name, event in tqdm(
            list(world_events(world, time.time())),
            desc="seed events",
            disable=not progress,
            unit="ev",
        ):
            pending.append(
                await producer.send(
                    prefix + name, orjson.dumps(event), key=event["customer_id"].encode()
                )
            )
            sent += 1
        await producer.flush()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return sent


async def seed_directly(world: DemoWorld, store: FeatureStore, progress: bool = True) -> int:
    """The same writes the stream worker makes, applied without a broker."""
    batch = []
    applied = 0
    for name, event in tqdm(
        list(world_events(world, time.time())), desc="seed store", disable=not progress, unit="ev"
    ):
        if name == "crm":
            batch.append(crm_writes(CrmEvent.model_validate(event)))
        else:
            batch.append(clickstream_writes(ClickstreamEvent.model_validate(event)))
        if len(batch) >= 500:
            applied += sum(await store.apply(batch))
            batch = []
    applied += sum(await store.apply(batch))
    return applied


def logged_history(world: DemoWorld, catalogue: Catalogue, rows: int = 40_000) -> TrainingSet:
    """A uniformly random logging policy over each placement's actions, answered by
    the world's hidden truth: the history a first model learns from."""
    data = TrainingSet()
    start = time.time() - 30 * 86400
    for i in range(rows):
        customer = world.pick()
        request = world.request(customer)
        candidates = catalogue.candidates(request["channel"], request["placement"])
        if not len(candidates):
            continue
        item = catalogue.actions[int(world.rng.choice(list(candidates)))]
        context = {
            **request["context"],
            "channel": request["channel"],
            "placement": request["placement"],
        }
        label = int(world.responds(customer, context, item.view))
        features = {**customer.profile, **world.behaviour(customer)}
        data.add(features, context, item.view, label, start + i * 60.0)
    return data


def train_demo_model(
    world: DemoWorld, catalogue: Catalogue, registry: ModelRegistry, rows: int = 40_000
) -> tuple[str, dict[str, Any]]:
    history = logged_history(world, catalogue, rows)
    return train_model(history, registry, source=f"demo world, {rows} uniformly logged rows")
