"""Consumer lag: how many events a group has not yet committed, per topic."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition

Groups = str | Mapping[str, str]  # one group for every topic, or each topic's group


async def consumer_lag(brokers: str, group: Groups, topics: Sequence[str]) -> dict[str, int]:
    """End offset minus committed offset, summed over each topic's partitions."""
    lag = dict.fromkeys(topics, 0)
    by_group: dict[str, list[str]] = {}
    for topic in topics:
        by_group.setdefault(group if isinstance(group, str) else group[topic], []).append(topic)
    for name, read in by_group.items():
        lag.update(await _group_lag(brokers, name, read))
    return lag


async def _group_lag(brokers: str, group: str, topics: list[str]) -> dict[str, int]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=brokers.split(","), group_id=group, enable_auto_commit=False
    )
    await consumer.start()  # not subscribed: it reads the group's offsets, never joins it
    try:
        partitions = []
        for topic in topics:
            for partition in await _partitions(consumer, topic):
                partitions.append(TopicPartition(topic, partition))
        ends = await consumer.end_offsets(partitions) if partitions else {}
        lag = dict.fromkeys(topics, 0)
        for tp in partitions:
            done = await consumer.committed(tp) or 0
            lag[tp.topic] += max(0, ends[tp] - done)
        return lag
    finally:
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    await consumer.topics()  # refreshes metadata
    return set(consumer.partitions_for_topic(topic) or ())


async def wait_for_lag_zero(
    brokers: str, group: Groups, topics: Sequence[str], timeout_s: float = 120.0
) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        lag = await consumer_lag(brokers, group, topics)
        if sum(lag.values()) == 0:
            return True
        await asyncio.sleep(0.5)
    return False
