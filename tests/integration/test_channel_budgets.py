"""Each channel waits for the store as long as its callers can: with Redis paused, a page
view falls back at the service's budget while the agent's desk, whose channel allows
longer, waits for the customer's features. Decisions that arrive together share a read
only when they share a budget (engine.batching)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis

from engine.batching import DecisionBatcher
from engine.decisions import Decider, DecisionPolicy
from engine.embedded import StackEndpoints
from engine.holders import LiveState
from engine.selection import DecisionInput
from feature_store.redis_store import RedisFeatureStore
from rules.catalogue import load_catalogue
from rules.contact import Reservation

pytestmark = pytest.mark.integration

CATALOGUE = """\
id: help-banner
kind: banner
name: Help
channels: [web, call_centre]
---
channels:
  web: {placements: [home_hero]}
  call_centre:
    placements: [agent_desk]
    budget_ms: 3000
"""
PAUSE_MS = 400


@pytest.fixture
async def store(stack: StackEndpoints) -> AsyncIterator[RedisFeatureStore]:
    store = RedisFeatureStore.from_url(stack.redis_url)
    await store.ping()  # connected before the pause
    yield store
    await store.close()


async def test_a_page_falls_back_at_its_budget_while_the_desk_waits_for_the_store(
    stack: StackEndpoints, store: RedisFeatureStore, tmp_path: Path
) -> None:
    (tmp_path / "catalogue.yaml").write_text(CATALOGUE)
    live = LiveState(load_catalogue(tmp_path))
    decider = Decider(store, live, None, DecisionPolicy(control_share=0.0, budget_s=0.020))
    batcher = DecisionBatcher(decider)
    admin = redis.Redis.from_url(stack.redis_url)
    try:
        admin.execute_command("CLIENT", "PAUSE", PAUSE_MS, "ALL")
        page, desk = await asyncio.gather(
            batcher.decide(DecisionInput("budget-1", "web")),
            batcher.decide(DecisionInput("budget-1", "call_centre")),
        )
    finally:
        admin.execute_command("CLIENT", "UNPAUSE")
        admin.close()
    assert page["fallback"] is True and page["took_ms"] < PAUSE_MS / 2, page
    assert desk["fallback"] is False and desk["took_ms"] >= PAUSE_MS / 2, desk
    assert [a["action_id"] for a in desk["actions"]] == ["help-banner"]
    assert batcher.batches == 2  # one read each: the page did not wait with the desk


async def test_a_reservation_gives_up_at_its_budget_and_the_next_is_served(
    stack: StackEndpoints, store: RedisFeatureStore
) -> None:
    """A decision that must reserve room in a cap waits for it no longer than its read
    may wait for the features; the connection stays in step for the next call."""
    admin = redis.Redis.from_url(stack.redis_url)
    customer = "budget-reserve-1"
    try:
        admin.execute_command("CLIENT", "PAUSE", PAUSE_MS, "ALL")
        started = time.perf_counter()
        with pytest.raises(TimeoutError):
            await store.reserve_many(
                [(customer, [Reservation("cap:a", 5, 60.0)], time.time())], budget_s=0.05
            )
        assert time.perf_counter() - started < PAUSE_MS / 2000
    finally:
        admin.execute_command("CLIENT", "UNPAUSE")
        admin.close()
    # the late reply of the call that gave up is dropped, not taken for this one's
    assert await store.reserve_many([(customer, [Reservation("cap:b", 1, 60.0)], time.time())])
    assert not await store.reserve(customer, [Reservation("cap:b", 1, 60.0)], time.time())
