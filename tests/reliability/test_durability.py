"""The embedded Redis keeps an append-only file (fsync every second) under
``NBA_DATA_DIR``: a profile written through the store is still there after the stack
stops and starts again on the same folder, also after a SIGKILL of Redis, and also
through the stack ``nba demo`` starts (README: Configuration)."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from pathlib import Path

import pytest

from engine.config import load_settings
from engine.embedded import EmbeddedStack, StackEndpoints
from engine.writes import EventWrites, Put
from feature_store.redis_store import RedisFeatureStore

pytestmark = pytest.mark.integration


def write_profile(redis_url: str, customer: str, **attributes: object) -> None:
    async def run() -> None:
        store = RedisFeatureStore.from_url(redis_url)
        try:
            writes = tuple(Put("profile", k, v) for k, v in attributes.items())
            applied = await store.apply([EventWrites(customer, f"du-{uuid.uuid4().hex}", writes)])
            assert applied == [True]
        finally:
            await store.close()

    asyncio.run(run())


def read_profile(redis_url: str, customer: str) -> dict[str, object]:
    async def run() -> dict[str, object]:
        store = RedisFeatureStore.from_url(redis_url)
        try:
            return dict((await store.fetch(customer)).profile)
        finally:
            await store.close()

    return asyncio.run(run())


def redis_only(data_dir: Path, stack: StackEndpoints) -> EmbeddedStack:
    """An embedded Redis on ``data_dir``; the session broker stands in for Kafka."""
    return EmbeddedStack(data_dir, kafka_brokers=stack.kafka_brokers)


def test_a_profile_survives_a_stop_and_start_of_the_embeddedstack_for(
    stack: StackEndpoints, tmp_path: Path
) -> None:
    customer = f"du-{uuid.uuid4().hex[:8]}"
    with redis_only(tmp_path, stack) as endpoints:
        write_profile(endpoints.redis_url, customer, age=41, segment="family")
    aof = [p for p in (tmp_path / "redis").rglob("*.aof*") if p.stat().st_size > 0]
    assert aof, sorted(p.name for p in (tmp_path / "redis").rglob("*"))
    with redis_only(tmp_path, stack) as endpoints:
        assert read_profile(endpoints.redis_url, customer) == {"age": 41, "segment": "family"}


def test_a_profile_survives_a_sigkill_of_redis_after_one_second(
    stack: StackEndpoints, tmp_path: Path
) -> None:
    """everysec: what Redis acknowledged more than a second ago is on disk."""
    customer = f"du-{uuid.uuid4().hex[:8]}"
    first = redis_only(tmp_path, stack)
    with first as endpoints:
        write_profile(endpoints.redis_url, customer, age=52)
        time.sleep(1.5)
        (redis,) = first.started_processes
        redis.send_signal(signal.SIGKILL)
        redis.wait(10)
    with redis_only(tmp_path, stack) as endpoints:
        assert read_profile(endpoints.redis_url, customer) == {"age": 52}


def test_a_profile_survives_a_restart_of_the_stack_nba_demo_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``nba demo`` (and serve, worker, seed without NBA_REDIS_URL/NBA_KAFKA_BROKERS)
    starts its servers with ``nba.startup.stack_for``: Redis under NBA_DATA_DIR/embedded."""
    from nba.startup import stack_for

    for name in ("NBA_REDIS_URL", "NBA_KAFKA_BROKERS", "NBA_API_KEYS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NBA_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("NBA_TOPIC_PREFIX", "du.")
    settings = load_settings()
    customer = f"du-{uuid.uuid4().hex[:8]}"
    with stack_for(settings) as endpoints:
        write_profile(endpoints.redis_url, customer, consent_marketing=True)
    assert (tmp_path / "var" / "embedded" / "redis").is_dir()
    with stack_for(settings) as endpoints:
        assert read_profile(endpoints.redis_url, customer) == {"consent_marketing": True}
