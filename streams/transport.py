"""faust's Kafka transport with a short fetch wait, and its worker without the spinner.

faust-streaming's consumer asks the broker to hold a fetch for up to 1,500 ms when no
data is ready (a fixed value, not a setting). With a broker that answers only when that
wait ends, an event could sit up to 1.5 s before the worker sees it; features must be
fresh within 100 ms. This transport keeps everything of faust's but that one number.
"""

from __future__ import annotations

import logging
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


class QuietWorker(faust.Worker):
    """faust's worker without its terminal spinner.

    For the spinner faust sets the root logger to DEBUG and adds a handler that turns
    every record into a spin. The spinner stops once the worker is up, but the level
    stays: every debug call of aiokafka, faust and mode then built a log record that no
    handler printed, per fetch and per event (43 of 6,670 samples in ``LogRecord``
    alone in the stream benchmark). Without the spinner the root logger keeps the
    worker's log level.
    """

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        self.spinner = None
        super().on_setup_root_logger(logger, level)
