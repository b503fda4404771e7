"""Decision log records wait while a decision is under way, are built one per turn of
the loop once none is, and never more than the backlog wait (engine.log_scheduling)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from engine.batching import DecisionBatcher
from engine.log_scheduling import LogScheduler
from engine.selection import DecisionInput
from feature_store.memory_store import MemoryFeatureStore
from tests.unit.test_decisions import ADULT, ListSink, decider, records_built, with_profile


async def turns(n: int) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def test_records_wait_while_a_decision_is_under_way() -> None:
    built: list[Any] = []
    logs = LogScheduler(built.append)
    with logs.deciding():
        logs.add([(1,), (2,)])
        await turns(20)
        assert built == []
    await turns(20)
    assert built == [1, 2]


async def test_a_request_that_arrives_between_records_goes_before_the_next() -> None:
    order: list[str] = []
    logs = LogScheduler(lambda n: order.append(f"record {n}"))
    logs.add([(1,), (2,), (3,)])

    async def request() -> None:
        with logs.deciding():
            order.append("request")
            await asyncio.sleep(0)  # reading the store, say
            order.append("answered")

    while not order:  # the first record is built
        await asyncio.sleep(0)
    await asyncio.create_task(request())
    await turns(10)
    assert order == ["record 1", "request", "answered", "record 2", "record 3"]


async def test_records_are_built_anyway_once_the_backlog_waits() -> None:
    built: list[Any] = []
    logs = LogScheduler(built.append, backlog=4)
    with logs.deciding():  # decisions that never pause
        logs.add([(n,) for n in range(3)])
        await turns(10)
        assert built == []
        logs.add([(3,)])
        await turns(10)
        assert built == [0]  # the oldest, down to fewer than the backlog
    await turns(10)
    assert built == [0, 1, 2, 3]


async def test_a_record_that_fails_does_not_hold_up_the_rest() -> None:
    built: list[int] = []

    def build(n: int) -> None:
        if n == 1:
            raise ValueError("a broken record")
        built.append(n)

    logs = LogScheduler(build)
    loop = asyncio.get_running_loop()
    errors: list[Any] = []
    loop.set_exception_handler(lambda _, context: errors.append(context["exception"]))
    try:
        logs.add([(0,), (1,), (2,)])
        await turns(10)
    finally:
        loop.set_exception_handler(None)
    assert built == [0, 2]
    assert [type(e) for e in errors] == [ValueError]


async def test_flush_builds_what_waits() -> None:
    built: list[Any] = []
    logs = LogScheduler(built.append)
    with logs.deciding():
        logs.add([(1,), (2,)])
        logs.flush()
        assert built == [1, 2]


async def test_a_batch_that_forms_holds_the_records_of_the_one_before() -> None:
    store = MemoryFeatureStore()
    for n in range(2):
        await with_profile(store, f"c{n}", **ADULT)
    engine = decider(store)
    sink = engine.sink
    assert isinstance(sink, ListSink)
    batcher = DecisionBatcher(engine)
    first = await batcher.decide(DecisionInput("c0", "web", "home_hero"))
    second = asyncio.create_task(batcher.decide(DecisionInput("c1", "web", "home_hero")))
    await asyncio.sleep(0)  # the second leads its batch, which forms
    await asyncio.sleep(0)
    assert sink.records == []  # the first's record waits for it
    await second
    await records_built(engine)
    logged = [orjson.loads(value)["decision_id"] for _, _, value in sink.records]
    assert logged == [first["decision_id"], second.result()["decision_id"]]
