"""faust's Kafka transport with a short fetch wait.

faust-streaming's consumer asks the broker to hold a fetch for up to 1,500 ms when no
data is ready (a fixed value, not a setting). With a broker that answers only when that
wait ends, an event could sit up to 1.5 s before the worker sees it; features must be
fresh within 100 ms. This transport keeps everything of faust's but that one number.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.transport.drivers import aiokafka as driver

FETCH_MAX_WAIT_MS = 20


class _ConsumerThread(driver.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return consumer


class _Consumer(driver.Consumer):
    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Transport(driver.Transport):
    Consumer = _Consumer


class WorkerApp(faust.App):
    """A faust app on :class:`_Transport`."""

    def _new_transport(self) -> Any:
        return _Transport(self.conf.broker_consumer, self)
