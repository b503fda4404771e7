"""Decision and feature-read costs on this machine (issues: decision engine, feature store).

Run: ``.venv/bin/python -m pytest benchmarks -m benchmark -q`` — writes
``benchmarks/results/<time>-bench.json`` and a PNG beside it.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from benchmarks.conftest import DiscardSink, record, timed
from benchmarks.world_100 import CATEGORIES, catalogue_of_100, customer_features, train_model_100
from engine.decisions import Decider, DecisionPolicy
from engine.embedded import StackEndpoints
from engine.events import ClickstreamEvent, CrmEvent
from engine.holders import LiveState
from engine.selection import DecisionInput, Selection
from feature_store.redis_store import RedisFeatureStore
from models.onnx_model import load_current
from models.registry import ModelRegistry
from rules.catalogue import load_catalogue
from streams.handlers import clickstream_writes, crm_writes

pytestmark = pytest.mark.benchmark


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Decider:
    folder = catalogue_of_100(tmp_path_factory.mktemp("catalogue"))
    registry = ModelRegistry(tmp_path_factory.mktemp("models"))
    train_model_100(folder, registry)
    live = LiveState(load_catalogue(folder), load_current(registry))

    return Decider(None, live, DiscardSink(), DecisionPolicy(control_share=0.0))  # type: ignore[arg-type]


def in_process(engine: Decider, explain: bool) -> Iterator[None]:
    """Everything a decision does but the store read: rules, one ONNX call, arbitration,
    response, and the decision log record serialised."""
    from engine.domain import CustomerState

    rng = random.Random(9)
    states = [CustomerState(f"c{i}", profile=customer_features(rng), known=True) for i in range(50)]
    snap = engine.live.snapshot
    now = time.time()
    i = 0
    while True:
        state = states[i % len(states)]
        i += 1
        request = DecisionInput(
            state.customer_id,
            "web",
            "home_hero",
            {"page_category": "shoes", "device": "mobile"},
            3,
            explain,
        )
        context = {**request.context, "channel": "web", "placement": "home_hero"}
        ranked = engine.rank(snap, request, "home_hero", state, context, now)
        selection = Selection(snap.catalogue, request, ranked)
        selection.next_ask()
        response = engine.respond(snap, request, "home_hero", state, ranked, selection.chosen, now)
        engine._log(snap, response, ranked, request, context, state, now)
        yield None


def test_decision_in_process_100_candidates(engine: Decider) -> None:
    steps = in_process(engine, explain=False)
    plain = timed(lambda: next(steps), rounds=5000)
    steps_explained = in_process(engine, explain=True)
    explained = timed(lambda: next(steps_explained), rounds=5000)
    a = record("decision_in_process_100c_30r_gbm100", plain, target_p50_us=200, target_p99_us=600)
    b = record("decision_in_process_explain", explained)
    b["ratio_to_plain_p50"] = b["p50_us"] / a["p50_us"]
    print(a, b)
    n_candidates = len(engine.live.snapshot.catalogue.candidates("web", "home_hero"))
    assert n_candidates == 100
    assert b["ratio_to_plain_p50"] < 4  # loose guard; the figure is the result
    # the same with the adaptive model on top (a Thompson sample per decision, and the
    # logged selection probabilities: 100 Monte-Carlo draws)
    from models.adaptive import AdaptiveModel
    from nba.adaptive import blend_with

    engine.live.set_blend(blend_with(AdaptiveModel()))
    try:
        steps_adaptive = in_process(engine, explain=False)
        adaptive = timed(lambda: next(steps_adaptive), rounds=3000)
    finally:
        engine.live.set_blend(None)
    c = record("decision_in_process_with_adaptive", adaptive)
    c["ratio_to_plain_p50"] = c["p50_us"] / a["p50_us"]


@pytest.fixture(scope="module")
def loaded_store(stack: StackEndpoints) -> Iterator[tuple[RedisFeatureStore, str]]:
    """A customer with ~60 features across the views, written through the stream handlers."""
    customer = f"bench-{uuid.uuid4().hex[:8]}"

    async def load() -> RedisFeatureStore:
        store = RedisFeatureStore.from_url(stack.redis_url)
        now = datetime.now(UTC)
        attrs = {
            k: v
            for k, v in customer_features(random.Random(1)).items()
            if "_" not in k
            or k
            in (
                "value_class",
                "tenure_months",
                "consent_marketing",
                "consent_email",
                "open_complaint",
                "last_seen",
            )
        }
        writes = [
            crm_writes(
                CrmEvent(
                    event_id="p",
                    customer_id=customer,
                    type="profile",
                    attributes=attrs,
                    timestamp=now,
                )
            )
        ]
        for i in range(60):
            kind = ("page_view", "product_view", "add_to_cart", "search", "purchase")[i % 5]
            writes.append(
                clickstream_writes(
                    ClickstreamEvent(
                        event_id=f"e{i}",
                        customer_id=customer,
                        type=kind,
                        category=CATEGORIES[i % len(CATEGORIES)],
                        timestamp=now,
                    )
                )
            )
        await store.apply(writes)
        return store

    store = asyncio.run(load())
    yield store, customer


def test_feature_read_full_vector(loaded_store: tuple[RedisFeatureStore, str]) -> None:
    """The read as the API does it (spinning on the socket for the reply, see
    feature_store.wire), and, side by side in the same run, waiting on the event loop."""
    store, customer = loaded_store

    async def run(spin_s: float | None) -> tuple[list[float], int]:
        options = {} if spin_s is None else {"read_spin_s": spin_s}
        fresh = RedisFeatureStore.from_url(_url(store), **options)
        state = await fresh.fetch(customer)
        width = len(state.features())
        samples = []
        for _ in range(300):
            await fresh.fetch(customer)
        for _ in range(5000):
            started = time.perf_counter()
            await fresh.fetch(customer)
            samples.append(time.perf_counter() - started)
        await fresh.close()
        return samples, width

    def measure(spin_s: float | None) -> tuple[list[float], int]:
        try:
            import uvloop

            return uvloop.run(run(spin_s))
        except ImportError:  # pragma: no cover
            return asyncio.run(run(spin_s))

    samples, width = measure(None)
    waiting, _ = measure(0.0)
    figures = record(
        "feature_read_full_vector_redis",
        samples,
        features=width,
        target_p50_us=100,
        target_p99_us=400,
    )
    slept = record("feature_read_full_vector_redis_no_spin", waiting, features=width)
    slept["ratio_to_spinning_p50"] = slept["p50_us"] / figures["p50_us"]
    print(figures, slept)
    assert width >= 55


def _url(store: RedisFeatureStore) -> str:
    kwargs = store.client.connection_pool.connection_kwargs
    return f"redis://{kwargs['host']}:{kwargs['port']}/0"
