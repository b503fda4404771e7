"""The engine's producer: nothing it is handed is lost while the broker is away.

``send`` (responses, ingested events) waits until the broker has the record, or until
the record is in the local spool; ``send_nowait`` (decision logs) only queues, so a
decision never waits for Kafka. Each has a producer of its own: the decision log's
batches wait up to 50 ms for more records, which would hold every response as long.
Whatever the broker does not take goes to the spool, which is replayed as soon as the
broker answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from streams.partitioning import RememberingPartitioner
from streams.spool import Record, Spool

log = logging.getLogger("nba.sink")
SEND_TIMEOUT_S = 2.0
REPLAY_EVERY_S = 1.0
BATCH = 500
MAX_BATCH_BYTES = 512 * 1024  # per partition and request; under Kafka's 1 MB default
LINGER_MS = 50  # the decision log's producer
PROMPT_LINGER_MS = 1  # the producer of `send`: a caller waits for it


class KafkaSink:
    def __init__(self, brokers: str, spool_dir: Path, queue_size: int = 100_000) -> None:
        self.brokers = brokers
        self.spool = Spool(spool_dir)
        self.queue_size = queue_size
        self.queue: asyncio.Queue[Record] | None = None
        self.producer: AIOKafkaProducer | None = None  # the decision log, and replays
        self.prompt: AIOKafkaProducer | None = None  # `send`: records a caller waits for
        self.delivered = 0
        self.healthy = True  # False after a failed send: spool at once until a replay works
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Never fails for want of a broker: until one answers, records are spooled."""
        self.queue = asyncio.Queue(self.queue_size)
        self._tasks = [
            asyncio.create_task(self._connect(), name="nba-sink-connect"),
            asyncio.create_task(self._drain(), name="nba-sink-drain"),
            asyncio.create_task(self._replay_forever(), name="nba-sink-replay"),
        ]

    async def _connect(self) -> None:
        while self.producer is None:
            # a batch of the decision log waits up to 50 ms for more records: at 1,000
            # decisions/s this halved the broker's CPU against 20 ms (24% -> 13% of a
            # core) and the worker's fetches with it. A `send` waited as long (54 ms a
            # response, idle) until it had a producer of its own.
            producer = self._producer(LINGER_MS)
            prompt = self._producer(PROMPT_LINGER_MS)
            try:
                await asyncio.wait_for(producer.start(), 10.0)
                await asyncio.wait_for(prompt.start(), 10.0)
                self.producer, self.prompt = producer, prompt
            except Exception as exc:
                log.warning("broker not reachable yet (%s); spooling", type(exc).__name__)
                for unused in (producer, prompt):
                    with contextlib.suppress(Exception):
                        await unused.stop()
                await asyncio.sleep(1.0)

    def _producer(self, linger_ms: int) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=self.brokers.split(","),
            linger_ms=linger_ms,
            max_batch_size=MAX_BATCH_BYTES,  # a decision record is a few KB: 16 KB held ~4
            acks=1,
            enable_idempotence=False,
            partitioner=RememberingPartitioner(),
            request_timeout_ms=5000,
            retry_backoff_ms=200,
        )

    async def send(self, topic: str, key: str, value: bytes) -> None:
        if self.prompt is not None and self.healthy:
            try:
                await asyncio.wait_for(
                    self.prompt.send_and_wait(topic, value, key=key.encode()), SEND_TIMEOUT_S
                )
                self.delivered += 1
                return
            except Exception as exc:
                self.healthy = False
                log.warning("broker did not take a record (%s); spooling", type(exc).__name__)
        self.spool.append([(topic, key, value)])

    def send_nowait(self, topic: str, key: str, value: bytes) -> None:
        if self.queue is None:
            self.spool.append([(topic, key, value)], sync=False)
            return
        try:
            self.queue.put_nowait((topic, key, value))
        except asyncio.QueueFull:
            self.spool.append([(topic, key, value)], sync=False)

    async def _deliver(self, records: list[Record]) -> list[Record]:
        """Send a batch; returns the records the broker did not confirm.

        One timeout guards the whole batch, not one per record: a timer task per
        record cost more CPU than producing the record."""
        if self.producer is None:
            return records
        producer = self.producer
        futures: list[asyncio.Future[Any]] = []

        async def hand_over() -> None:
            for topic, key, value in records:  # waits only while the producer's buffer is full
                futures.append(await producer.send(topic, value, key=key.encode()))

        try:
            await asyncio.wait_for(hand_over(), SEND_TIMEOUT_S)
        except Exception:
            self.healthy = False
        unsent = records[len(futures) :]
        try:
            results: list[Any] = await asyncio.wait_for(
                asyncio.gather(*futures, return_exceptions=True), SEND_TIMEOUT_S * 3
            )
        except Exception:  # timed out: none is known to have arrived
            results = [TimeoutError()] * len(futures)
        if unsent or any(isinstance(r, BaseException) for r in results):
            self.healthy = False
        sent = records[: len(futures)]
        failed = [r for r, res in zip(sent, results, strict=True) if isinstance(res, BaseException)]
        self.delivered += len(sent) - len(failed)
        return failed + unsent

    async def _drain(self) -> None:
        assert self.queue is not None
        while True:
            batch = [await self.queue.get()]
            while len(batch) < BATCH and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            healthy = self.producer is not None and self.healthy
            failed = await self._deliver(batch) if healthy else batch
            if failed:
                self.spool.append(failed, sync=True)

    async def replay(self) -> int:
        """Hand every spooled record to the broker; returns how many went."""
        if self.producer is None:
            return 0
        self.spool.rotate()
        sent = 0
        for path in self.spool.files():
            with self.spool.claim(path) as records:
                if records is None:
                    continue
                failed = []
                for start in range(0, len(records), BATCH):
                    failed += await self._deliver(records[start : start + BATCH])
                if failed:
                    self.spool.append(failed, sync=True)
                self.spool.done(path, len(records))
                sent += len(records) - len(failed)
                if failed:
                    return sent
        self.healthy = True
        return sent

    async def _replay_forever(self) -> None:
        while True:
            await asyncio.sleep(REPLAY_EVERY_S)
            if self.producer is not None and self.spool.files():
                try:
                    sent = await self.replay()
                    if sent:
                        log.warning("replayed %d spooled records", sent)
                except Exception as exc:
                    log.warning("replay failed (%s); will retry", type(exc).__name__)

    async def close(self) -> None:
        """Deliver what is queued (or spool it), then stop."""
        deadline = asyncio.get_running_loop().time() + 5.0
        while self.queue and not self.queue.empty():
            if asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.01)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.queue is not None and not self.queue.empty():
            left = []
            while not self.queue.empty():
                left.append(self.queue.get_nowait())
            self.spool.append(left)
        for producer in (self.prompt, self.producer):
            if producer is not None:
                with contextlib.suppress(Exception):
                    await producer.stop()
        self.spool.close()
