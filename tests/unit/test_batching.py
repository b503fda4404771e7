"""Page views that arrive together are decided together (engine.batching): each caller
still gets its own answer, or its own error, and every decision is logged once."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest

from engine.batching import DecisionBatcher
from engine.decisions import BatchTimes
from engine.errors import BadRequest
from engine.selection import DecisionInput
from feature_store.memory_store import MemoryFeatureStore
from tests.unit.test_decisions import ADULT, ListSink, decider, records_built, with_profile


async def test_requests_of_one_turn_share_a_batch_and_keep_their_own_answers() -> None:
    store = MemoryFeatureStore()
    for n in range(6):
        await with_profile(store, f"c{n}", **ADULT)
    engine = decider(store)
    batcher = DecisionBatcher(engine)
    placements = ["home_hero", "product_sidebar", "search_results"]
    requests = [
        DecisionInput(f"c{n}", "web", placements[n % 3], {"page_category": "shoes"}, 1 + n % 2)
        for n in range(6)
    ]
    answers = await asyncio.gather(*(batcher.decide(r) for r in requests))
    assert batcher.batches == 1 and batcher.decisions == 6
    for request, answer in zip(requests, answers, strict=True):
        assert answer["customer_id"] == request.customer_id
        assert answer["placement"] == request.placement
        assert 1 <= len(answer["actions"]) <= request.limit
    await records_built(engine)
    sink = engine.sink
    assert isinstance(sink, ListSink)
    logged = [orjson.loads(value)["decision_id"] for _, _, value in sink.records]
    assert sorted(logged) == sorted(a["decision_id"] for a in answers)


async def test_every_caller_of_a_batch_has_its_answer_before_a_record_is_built() -> None:
    """The records cost more than the answers: a caller that waited for them would count
    them in its latency."""
    store = MemoryFeatureStore()
    engine = decider(store)
    batcher = DecisionBatcher(engine)
    callers: list[asyncio.Task[object]] = []
    answered_at_first_record: list[bool] = []

    class WatchingSink(ListSink):
        def send_nowait(self, topic: str, key: str, value: bytes) -> None:
            if not answered_at_first_record:
                answered_at_first_record.append(all(c.done() for c in callers))
            super().send_nowait(topic, key, value)

    engine.sink = WatchingSink()
    callers.extend(
        asyncio.create_task(batcher.decide(DecisionInput(f"c{n}", "web", "home_hero")))
        for n in range(4)
    )
    await asyncio.gather(*callers)
    for _ in range(3):
        await asyncio.sleep(0)
    assert batcher.batches == 1
    assert answered_at_first_record == [True]


async def test_a_bad_request_fails_alone() -> None:
    batcher = DecisionBatcher(decider(MemoryFeatureStore()))
    good = DecisionInput("c1", "web", "home_hero")
    bad = DecisionInput("c2", "web", "moon")
    results = await asyncio.gather(
        batcher.decide(good), batcher.decide(bad), batcher.decide(good), return_exceptions=True
    )
    assert batcher.batches == 1
    assert isinstance(results[1], BadRequest) and results[1].field == "placement"
    assert all(isinstance(r, dict) and r["customer_id"] == "c1" for r in results[::2])
    with pytest.raises(BadRequest):  # the one that leads a batch raises too
        await batcher.decide(bad)


async def test_requests_of_different_turns_are_decided_apart() -> None:
    batcher = DecisionBatcher(decider(MemoryFeatureStore()))
    for _ in range(3):
        await batcher.decide(DecisionInput("c1", "web", "home_hero"))
    assert batcher.batches == 3


async def test_a_batch_is_bounded() -> None:
    batcher = DecisionBatcher(decider(MemoryFeatureStore()), max_batch=4)
    answers = await asyncio.gather(
        *(batcher.decide(DecisionInput(f"c{n}", "web", "home_hero")) for n in range(10))
    )
    assert [a["customer_id"] for a in answers] == [f"c{n}" for n in range(10)]
    assert batcher.batches == 3  # 4 + 4 + 2


async def test_when_the_store_is_away_every_request_of_the_batch_falls_back() -> None:
    store = MemoryFeatureStore()
    store.fail = ConnectionError("down")
    engine = decider(store)
    batcher = DecisionBatcher(engine)
    answers = await asyncio.gather(
        *(batcher.decide(DecisionInput(f"c{n}", "web", "home_hero")) for n in range(3))
    )
    assert all(a["fallback"] for a in answers)
    await records_built(engine)
    sink = engine.sink
    assert isinstance(sink, ListSink)
    assert len(sink.records) == 3  # fallback decisions are logged too


async def test_a_batch_says_where_its_time_went() -> None:
    store = MemoryFeatureStore()
    for n in range(3):
        await with_profile(store, f"c{n}", **ADULT)
    timed: list[BatchTimes] = []
    batcher = DecisionBatcher(decider(store), timed=timed.append)
    started = time.perf_counter()
    # a newsletter decision reserves room in the weekly e-mail cap: a second round trip
    answers = await asyncio.gather(
        *(batcher.decide(DecisionInput(f"c{n}", "email", "newsletter_block")) for n in range(3))
    )
    took = time.perf_counter() - started
    assert all(a["actions"] for a in answers)
    [times] = timed
    assert times.size == 3
    assert times.read > 0 and times.ranking > 0 and times.reserving > 0
    assert times.forming + times.read + times.ranking + times.reserving <= took

    timed.clear()
    await batcher.decide(DecisionInput("c0", "web", "home_hero"))  # page views reserve nothing
    [times] = timed
    assert times.size == 1 and times.reserving == 0.0 and times.ranking > 0
