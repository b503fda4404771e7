"""The stream worker's decision-log reader (streams.log_reader) against the real broker:
bad records go to the dead-letter handler, and offsets are committed only after a
batch's effects are stored, so a reader stopped before that leaves the batch to the next."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import orjson
import pytest

from engine.embedded import StackEndpoints, ensure_topics
from streams.lag import consumer_lag
from streams.log_reader import DecisionLogReader
from streams.worker import DecisionRecord, decode_event
from tests.reliability._support import produce_async

pytestmark = pytest.mark.integration


def record(n: int) -> bytes:
    return orjson.dumps(
        {
            "decision_id": f"d-{n}",
            "timestamp": time.time(),
            "channel": "web",
            "group": "treatment",
            "chosen": ["summer-shoes-10"],
            "candidates": {"action_ids": ["summer-shoes-10"], "p_chosen": [1.0]},
        }
    )


class Seen:
    def __init__(self) -> None:
        self.handled: list[str] = []
        self.dead: list[tuple[bytes | None, str]] = []
        self.hold = asyncio.Event()
        self.hold.set()

    async def handle(self, records: list[Any]) -> int:
        await self.hold.wait()
        self.handled += [r.decision_id for r in records]
        return len(records)

    async def dead_letter(self, key: bytes | None, raw: Any, reason: str) -> None:
        self.dead.append((key, reason))


def reader(stack: StackEndpoints, topic: str, group: str, seen: Seen) -> DecisionLogReader:
    return DecisionLogReader(
        stack.kafka_brokers,
        topic,
        group,
        lambda raw: decode_event(raw, DecisionRecord),
        seen.handle,
        seen.dead_letter,
    )


async def until(check: Any, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def stopped(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def fresh_topic(stack: StackEndpoints) -> tuple[str, str]:
    topic = f"lr-{uuid.uuid4().hex[:8]}.decisions"
    ensure_topics(stack.kafka_brokers, [topic], partitions=4)
    return topic, f"lr-group-{uuid.uuid4().hex[:8]}"


def test_bad_records_are_dead_lettered_and_the_rest_handled_and_committed(
    stack: StackEndpoints,
) -> None:
    topic, group = fresh_topic(stack)
    records = [
        (b"c-1", record(1)),
        (b"c-2", b"not json"),
        (b"c-3", orjson.dumps({"decision_id": "d-3"})),  # no timestamp, channel, group
        (b"c-4", record(4)),
    ]

    async def scenario() -> None:
        await produce_async(stack.kafka_brokers, topic, records)
        seen = Seen()
        task = asyncio.create_task(reader(stack, topic, group, seen).run())
        try:
            await until(lambda: len(seen.handled) + len(seen.dead) == 4)
            assert sorted(seen.handled) == ["d-1", "d-4"]
            reasons = dict(seen.dead)
            assert set(reasons) == {b"c-2", b"c-3"}
            assert "not valid JSON" in reasons[b"c-2"]
            assert "timestamp" in reasons[b"c-3"]
            lag: dict[str, int] = {}

            async def committed() -> bool:
                lag.update(await consumer_lag(stack.kafka_brokers, group, [topic]))
                return lag[topic] == 0

            deadline = time.monotonic() + 10
            while not await committed():
                assert time.monotonic() < deadline, f"not committed: {lag}"
                await asyncio.sleep(0.1)
        finally:
            await stopped(task)

    asyncio.run(scenario())


def test_a_batch_not_stored_is_not_committed_and_the_next_reader_takes_it(
    stack: StackEndpoints,
) -> None:
    topic, group = fresh_topic(stack)

    async def scenario() -> None:
        await produce_async(stack.kafka_brokers, topic, [(b"c-1", record(1))])
        first = Seen()
        first.hold.clear()  # its store never answers
        task = asyncio.create_task(reader(stack, topic, group, first).run())
        try:
            await asyncio.sleep(5)  # joined, fetched, waiting on the store
        finally:
            await stopped(task)
        assert first.handled == []
        lag = await consumer_lag(stack.kafka_brokers, group, [topic])
        assert lag[topic] == 1
        second = Seen()
        task = asyncio.create_task(reader(stack, topic, group, second).run())
        try:
            await until(lambda: second.handled == ["d-1"])
        finally:
            await stopped(task)

    asyncio.run(scenario())
