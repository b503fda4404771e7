"""What cold caches and batching do to a decision, and what the adaptive learner pays per
observation (issues: decision engine, channels and load).

On a loaded machine the other processes (Redis, the broker, the worker, Locust) evict an
API process's caches between two decisions. Here the demo world's web decisions run in
process (in-memory store, a trained model, the adaptive model on top), each batch either
straight after the last (warm) or after touching 48 MB (cold), alone or in batches of
2 and 4 through ``decide_many`` (see engine/batching.py).

Run: ``.venv/bin/python -m pytest benchmarks/test_bench_warmth.py -m benchmark -s``.
"""

from __future__ import annotations

import asyncio
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks.conftest import DiscardSink, record
from engine.config import DEMO_CATALOGUE
from engine.decisions import Decider, DecisionPolicy
from engine.holders import LiveState
from engine.selection import DecisionInput
from feature_store.memory_store import MemoryFeatureStore
from models.adaptive import AdaptiveModel, Observation
from models.onnx_model import load_current
from models.registry import ModelRegistry
from nba.adaptive import blend_with
from nba.demo.seed import seed_directly, train_demo_model
from nba.demo.world import DemoWorld
from rules.catalogue import load_catalogue
from tests.unit.test_decisions import records_built

pytestmark = pytest.mark.benchmark
DECISIONS = 2000


async def _world_decisions(adaptive: bool = True) -> tuple[Decider, list[DecisionInput]]:
    world = DemoWorld(3000)
    catalogue = load_catalogue(DEMO_CATALOGUE)
    store = MemoryFeatureStore()
    await seed_directly(world, store, progress=False)
    registry = ModelRegistry(Path(tempfile.mkdtemp()))
    train_demo_model(world, catalogue, registry, rows=8000)
    blend = blend_with(AdaptiveModel()) if adaptive else None  # off: NBA_ADAPTIVE=off
    live = LiveState(catalogue, load_current(registry), blend=blend)
    decider = Decider(store, live, DiscardSink(), DecisionPolicy(control_share=0.05))  # type: ignore[arg-type]
    requests: list[DecisionInput] = []
    while len(requests) < DECISIONS:
        r = world.request(world.pick())
        if r["channel"] == "web":
            requests.append(
                DecisionInput(
                    r["customer_id"], "web", r.get("placement"), r["context"], r.get("limit", 3)
                )
            )
    return decider, requests


def test_decisions_warm_and_cold_alone_and_in_batches() -> None:
    async def run() -> dict[str, list[float]]:
        decider, requests = await _world_decisions()
        for request in requests[:300]:
            await decider.decide(request)
        junk = np.ones(6_000_000)  # 48 MB, beyond the caches
        out: dict[str, list[float]] = {}
        for size in (1, 2, 4):
            for cold in (False, True):
                per_decision = []
                for at in range(0, len(requests), size):
                    if cold:
                        junk *= 1.0000001
                    started = time.perf_counter()
                    await decider.decide_many(list(requests[at : at + size]))
                    await records_built(decider)
                    per_decision.append((time.perf_counter() - started) / size)
                out[f"demo_web_decision_{'cold' if cold else 'warm'}_batch{size}"] = per_decision
        return out

    for name, samples in asyncio.run(run()).items():
        print(record(name, samples))


def test_decisions_with_the_model_alone() -> None:
    """The same decisions alone, warm, with and without the adaptive layer, alternated
    in rounds of 200 so that both see the same machine."""

    async def run() -> dict[str, list[float]]:
        pairs = [await _world_decisions(adaptive) for adaptive in (True, False)]
        out: dict[str, list[float]] = {"on": [], "off": []}
        for decider, requests in pairs:
            for request in requests[:300]:
                await decider.decide(request)
        for at in range(0, DECISIONS, 200):
            for (decider, requests), name in zip(pairs, ("on", "off"), strict=True):
                for request in requests[at : at + 200]:
                    started = time.perf_counter()
                    await decider.decide_many([request])
                    await records_built(decider)
                    out[name].append(time.perf_counter() - started)
        return out

    samples = asyncio.run(run())
    on = record("demo_web_decision_warm_batch1_adaptive_on", samples["on"])
    off = record("demo_web_decision_warm_batch1_model_alone", samples["off"])
    off["ratio_to_adaptive_on_p50"] = off["p50_us"] / on["p50_us"]
    print(on, off)


def test_adaptive_update_per_observation() -> None:
    """The worker's learning step, with 1-3 shown actions per decision (the customer and
    context objects shared by a decision's observations, as the learner receives them)."""
    from benchmarks.world_100 import customer_features

    rng = random.Random(1)
    observations: list[Observation] = []
    while len(observations) < 2000:
        customer = customer_features(rng)
        context: dict[str, Any] = {"page_category": "shoes", "device": "mobile"}
        for _ in range(rng.choice([1, 3, 3, 2])):
            n = len(observations)
            action = {"id": f"a-{n % 50}", "category": "shoes", "kind": "offer", "value": 5}
            observations.append(Observation(customer, context, action, float(n % 7 == 0), -3.0))
    samples = []
    for _ in range(7):
        model = AdaptiveModel(seed=1)
        model.update_batch(observations[:50])
        started = time.perf_counter()
        model.update_batch(observations)
        samples.append((time.perf_counter() - started) / len(observations))
    print(record("adaptive_update_per_observation", samples, observations=len(observations)))
