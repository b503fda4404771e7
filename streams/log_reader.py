"""The decision log read in bulk by the stream worker (impact counters, the learner).

Why not a faust agent like the other topics: the engine logs every decision, so this is
the worker's busiest topic (1,000 records/s at 1,000 decisions/s), and nothing in it
needs per-event stream processing: a batch is counted and remembered as a whole. faust
delivers each record through its consumer thread, conductor and stream; in a scratch
measurement with decision-sized records (7 KB), that took about 300 µs of CPU per record
against about 21 µs for ``AIOKafkaConsumer.getmany`` on the same broker. Here one
consumer, in the worker's event loop, takes what has arrived in one call.

The reader has its own consumer group (:func:`log_group`): faust's group speaks faust's
own assignment protocol, which a plain consumer cannot join. As with the agents, offsets
are committed only after a batch's effects are stored, and a record that does not
validate goes to the dead-letter topic with the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

__all__ = ["LOG_TOPIC", "DecisionLogReader", "log_group"]

log = logging.getLogger("nba.worker")
LOG_TOPIC = "decisions"  # the topic read here, after the prefix
MAX_RECORDS = 1000  # records per batch at most
FETCH_MAX_WAIT_MS = 50  # an idle fetch returns after this long (nothing waits on it)


def log_group(worker_group: str) -> str:
    """The consumer group of the decision log's readers beside ``worker_group``."""
    return f"{worker_group}-log"


Decode = Callable[[Any], tuple[Any, str | None]]
Handle = Callable[[list[Any]], Awaitable[int]]
DeadLetter = Callable[[bytes | None, Any, str], Awaitable[None]]  # key, value, reason
Observe = Callable[[list[Any], int], None]


class DecisionLogReader:
    """``decode``: a raw value to (record, None) or (None, reason); ``handle``: stores a
    batch's effects, retrying until it can (see ``streams.worker._until_stored``), and
    returns how many were new; ``observe``: told of every stored batch (the stats)."""

    def __init__(
        self,
        brokers: str,
        topic: str,
        group: str,
        decode: Decode,
        handle: Handle,
        dead_letter: DeadLetter,
        observe: Observe | None = None,
        max_records: int = MAX_RECORDS,
    ) -> None:
        self.brokers = brokers
        self.topic = topic
        self.group = group
        self.decode = decode
        self.handle = handle
        self.dead_letter = dead_letter
        self.observe = observe
        self.max_records = max_records

    def _consumer(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            self.topic,
            bootstrap_servers=self.brokers.split(","),
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
            # the same short group timeouts as the agents (the embedded broker joins
            # a group when the rebalance timeout ends)
            session_timeout_ms=6000,
            heartbeat_interval_ms=1000,
            rebalance_timeout_ms=3000,
        )

    async def run(self) -> None:
        """Read, store and commit until cancelled; the group is left on the way out."""
        consumer = self._consumer()
        await consumer.start()
        try:
            while True:
                fetched = await consumer.getmany(timeout_ms=1000, max_records=self.max_records)
                if fetched:
                    await self._take(consumer, fetched)
        finally:
            await consumer.stop()

    async def _take(
        self, consumer: AIOKafkaConsumer, fetched: dict[TopicPartition, list[Any]]
    ) -> None:
        records: list[Any] = []
        ends: dict[TopicPartition, int] = {}
        for tp, messages in fetched.items():
            for message in messages:
                parsed, reason = self.decode(message.value)
                if parsed is None:
                    await self.dead_letter(message.key, message.value, reason or "invalid")
                else:
                    records.append(parsed)
            ends[tp] = messages[-1].offset + 1
        if records:
            applied = await self.handle(records)
            if self.observe is not None:
                self.observe(records, applied)
        try:
            await consumer.commit(ends)
        except KafkaError as exc:  # the partitions moved to another reader meanwhile,
            # which reads this batch again
            log.warning("committing the decision log's offsets failed (%s)", exc)
