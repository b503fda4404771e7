"""The engine's producer: responses and ingested events awaited, decision logs queued.

Decision logs must never slow a decision, so :meth:`send_nowait` only appends to a
bounded queue that a background task drains in batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka import AIOKafkaProducer

log = logging.getLogger("nba.sink")


class KafkaSink:
    def __init__(self, brokers: str, queue_size: int = 100_000) -> None:
        self.brokers = brokers
        self.queue_size = queue_size
        self._producer: AIOKafkaProducer | None = None
        self.queue: asyncio.Queue[tuple[str, str, bytes]] | None = None
        self.dropped = 0
        self._drainer: asyncio.Task[None] | None = None

    @property
    def producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise RuntimeError("the sink is not started")
        return self._producer

    async def start(self) -> None:
        """Made inside the running loop (aiokafka binds to it)."""
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.brokers.split(","),
            linger_ms=5,
            acks=1,
            enable_idempotence=False,
            request_timeout_ms=10_000,
        )
        self.queue = asyncio.Queue(self.queue_size)
        await self._producer.start()
        self._drainer = asyncio.create_task(self._drain(), name="nba-sink-drain")

    async def send(self, topic: str, key: str, value: bytes) -> None:
        await self.producer.send_and_wait(topic, value, key=key.encode())

    def send_nowait(self, topic: str, key: str, value: bytes) -> None:
        if self.queue is None:
            self.dropped += 1
            return
        try:
            self.queue.put_nowait((topic, key, value))
        except asyncio.QueueFull:
            self.dropped += 1

    async def _drain(self) -> None:
        assert self.queue is not None
        while True:
            topic, key, value = await self.queue.get()
            try:
                await self.producer.send(topic, value, key=key.encode())
            except Exception:  # broker trouble: the record is counted as lost for now
                self.dropped += 1
                log.exception("could not hand a record to the producer")

    async def close(self) -> None:
        deadline = asyncio.get_running_loop().time() + 5.0
        while (
            self.queue and not self.queue.empty() and asyncio.get_running_loop().time() < deadline
        ):
            await asyncio.sleep(0.01)
        if self._drainer is not None:
            self._drainer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._drainer
        if self._producer is not None:
            await self._producer.stop()
