"""A response is acknowledged once the broker has it, without waiting for the decision
log's batching: the decision log's producer holds a batch up to 50 ms for more records
(streams.kafka_sink.LINGER_MS), and a caller posting a response must not wait as long."""

from __future__ import annotations

import statistics
import time
import uuid

import httpx
import pytest

from streams.kafka_sink import LINGER_MS
from tests.conftest import Running, auth

pytestmark = pytest.mark.integration
RESPOND = auth("test-respond-key-01")


def test_a_response_is_acknowledged_without_the_decision_logs_linger(running: Running) -> None:
    customer = f"ack-{uuid.uuid4().hex[:8]}"
    took = []
    with httpx.Client(base_url=running.base_url, headers=RESPOND, timeout=5) as client:
        for _ in range(21):
            started = time.perf_counter()
            reply = client.post(
                "/v1/responses",
                json={
                    "action_id": "summer-shoes-10",
                    "customer_id": customer,
                    "outcome": "impression",
                },
            )
            took.append(time.perf_counter() - started)
            assert reply.status_code == 202, reply.text
    # before each send had a producer of its own, every one took the linger and more
    assert statistics.median(took[1:]) * 1000 < LINGER_MS / 2, took
