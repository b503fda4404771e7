"""``/metrics`` tells a live stream worker from a hung one, and counts dead letters."""

from __future__ import annotations

import asyncio
import re
import time
import uuid

import httpx
import pytest

from engine.metrics import STALE_REPORT_S
from feature_store.ops_store import RedisOpsStore
from tests.conftest import Running
from tests.integration.test_end_to_end import eventually, produce

pytestmark = pytest.mark.integration


def scrape(running: Running) -> str:
    return httpx.get(f"{running.base_url}/metrics", timeout=5).text


def test_the_worker_reports_its_age_and_its_dead_letters(running: Running) -> None:
    customer = f"it-{uuid.uuid4().hex[:10]}"
    produce(running.endpoints.kafka_brokers, "it.clickstream", customer, [b"{not json"])
    pattern = re.compile(r'nba_stream_dead_letters_total\{worker="[^"]+",topic="clickstream"\} ')

    def counted() -> str | None:
        text = scrape(running)
        return text if pattern.search(text) else None

    text = eventually(counted)
    ages = re.findall(r"nba_stream_worker_report_age_seconds\{worker=\"[^\"]+\"\} (\S+)", text)
    assert ages and min(float(age) for age in ages) < STALE_REPORT_S


def test_a_hung_workers_last_report_shows_its_age_and_no_lag(running: Running) -> None:
    """A worker that stopped reporting (hung, SIGSTOP) keeps an age that grows; its last
    lag of 0 is not exported as if it were live."""
    worker = f"hung-{uuid.uuid4().hex[:8]}"

    async def publish(fields: dict[str, float] | None) -> None:
        ops = RedisOpsStore.from_url(running.endpoints.redis_url)
        try:
            if fields is None:
                client = await ops.redis()
                await client.delete(ops.prefix + worker)
            else:
                await ops.publish(worker, fields)
        finally:
            await ops.close()

    last = time.time() - 60
    asyncio.run(publish({"at": last, "clickstream|lag": 0.0, "clickstream|applied": 5.0}))
    try:
        text = scrape(running)
    finally:
        asyncio.run(publish(None))
    age = re.search(rf'nba_stream_worker_report_age_seconds\{{worker="{worker}"\}} (\S+)', text)
    assert age is not None and float(age.group(1)) >= 60
    assert f'nba_stream_consumer_lag{{worker="{worker}"' not in text
    assert f'nba_stream_events_applied_total{{worker="{worker}",topic="clickstream"}} 5.0' in text
