"""A clickstream producer in its own process, for the stream benchmark.

``python -m benchmarks.stream_producer BROKERS TOPIC COUNT RATE`` sends COUNT page views
over 500 customers, at RATE events/s (0: as fast as it can), each stamped with its send
time so the worker's freshness is event-sent to feature-stored.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from datetime import UTC, datetime

import orjson
from aiokafka import AIOKafkaProducer

CATEGORIES = ("shoes", "bags", "electronics", "home", "sports", "beauty")


async def produce(brokers: str, topic: str, count: int, rate: float) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=brokers, linger_ms=5, max_batch_size=262144)
    await producer.start()
    run = uuid.uuid4().hex[:6]
    started = time.monotonic()
    try:
        for i in range(count):
            if rate > 0:
                due = started + i / rate
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            customer = f"sb-{i % 500}"
            event = {
                "event_id": f"{run}-{i}",
                "customer_id": customer,
                "type": "page_view",
                "category": CATEGORIES[i % len(CATEGORIES)],
                "timestamp": datetime.now(UTC).isoformat(),
            }
            await producer.send(topic, orjson.dumps(event), key=customer.encode())
        await producer.flush()
    finally:
        await producer.stop()


if __name__ == "__main__":
    asyncio.run(produce(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])))
