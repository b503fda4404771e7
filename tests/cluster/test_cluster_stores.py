"""Every Redis store on a three-master Redis Cluster, reached by the same URL-based
``from_url`` as a single server (the feature store's contract suite runs on the cluster
too: ``tests/integration/test_store_contract.py``)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from engine.embedded import StackEndpoints
from engine.writes import Append, EventWrites, ImpactResponse, Increment, Put
from feature_store.catalogue_store import RedisCatalogueStore
from feature_store.connect import connect
from feature_store.impact_store import Cell, RedisImpactStore
from feature_store.ops_store import TTL_S, RedisOpsStore
from feature_store.redis_store import APPLY_ONCE, RedisFeatureStore
from rules.contact import Reservation
from tests.cluster.cluster import LocalCluster

pytestmark = pytest.mark.integration
WEEK = 7 * 86400.0


def unique(tag: str) -> str:
    return f"{tag}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def store(redis_cluster: LocalCluster) -> AsyncIterator[RedisFeatureStore]:
    feature_store = RedisFeatureStore.from_url(redis_cluster.url)
    yield feature_store
    await feature_store.close()


def keys_per_master(cluster: LocalCluster, pattern: str) -> dict[int, list[bytes]]:
    """What each master holds, asked of each one directly (not through redis-py's
    cluster client)."""
    found: dict[int, list[bytes]] = {}
    for port in cluster.ports:
        with cluster.node(port) as node:
            found[port] = list(node.scan_iter(match=pattern, count=1000))
    return found


async def test_the_url_says_nothing_the_server_tells_single_or_cluster(
    redis_cluster: LocalCluster, stack: StackEndpoints
) -> None:
    on_cluster = await connect(redis_cluster.url)
    single = await connect(stack.redis_url)
    try:
        assert isinstance(on_cluster, RedisCluster)
        assert len(on_cluster.get_primaries()) == 3
        assert isinstance(single, Redis)
    finally:
        await on_cluster.aclose()
        await single.aclose()


async def test_one_read_spans_every_master(
    redis_cluster: LocalCluster, store: RedisFeatureStore
) -> None:
    tag = unique("spread")
    customers = [f"{tag}-{n}" for n in range(30)]
    batch = [EventWrites(c, "e1", (Put("profile", "n", n),)) for n, c in enumerate(customers)]
    assert await store.apply(batch) == [True] * 30
    held = keys_per_master(redis_cluster, f"*{tag}*")
    assert all(held.values()), "30 customers should land on every master"
    states = await store.fetch_many(customers)
    assert [s.profile["n"] for s in states] == list(range(30))
    assert await store.ping()


async def test_a_master_that_lost_the_scripts_gets_them_and_nothing_runs_twice(
    redis_cluster: LocalCluster, store: RedisFeatureStore
) -> None:
    tag = unique("noscript")
    customers = [f"{tag}-{n}" for n in range(30)]
    first = [EventWrites(c, "e1", (Increment("counters", "hits"),)) for c in customers]
    assert await store.apply(first) == [True] * 30
    with redis_cluster.node(redis_cluster.ports[1]) as node:
        node.script_flush()  # as after a restart or a failover to a fresh replica
    second = [EventWrites(c, "e2", (Increment("counters", "hits"),)) for c in customers]
    assert await store.apply(first[:5] + second) == [False] * 5 + [True] * 30
    assert [s.counters["hits"] for s in await store.fetch_many(customers)] == [2.0] * 30
    with redis_cluster.node(redis_cluster.ports[1]) as node:
        assert node.script_exists(APPLY_ONCE.sha) == [True]


async def test_erasure_leaves_no_key_on_any_master(
    redis_cluster: LocalCluster, store: RedisFeatureStore
) -> None:
    customer, other = unique("erase"), unique("keep")
    for who in (customer, other):
        writes = (Put("profile", "age", 1), Increment("counters", "a"), Append("history", {}))
        await store.apply([EventWrites(who, "e1", writes), EventWrites(who, "e2", writes)])
    assert await store.erase(customer) == 5  # three views, two idempotency markers
    assert not any(keys_per_master(redis_cluster, f"*{customer}*").values())
    assert sum(map(len, keys_per_master(redis_cluster, f"*{other}*").values())) == 5


async def test_reservations_race_and_the_cap_holds(store: RedisFeatureStore) -> None:
    customer = unique("race")
    cap = [Reservation("cap:email:w", 3, WEEK)]
    granted = await asyncio.gather(*(store.reserve(customer, cap, 1000.0 + n) for n in range(20)))
    assert sum(granted) == 3


async def test_one_batch_reserves_on_every_master(store: RedisFeatureStore) -> None:
    customers = [unique("batch") for _ in range(12)]
    cap = [Reservation("cap:sms:w", 2, WEEK)]
    asks = [(c, cap, 1000.0 + n) for n in range(3) for c in customers]  # three asks each
    granted = await store.reserve_many(asks)
    assert granted == [True] * 24 + [False] * 12  # in order per customer: two fit


@pytest.fixture
def prefix() -> str:
    return f"{unique('t')}:"


async def test_catalogue_changes_are_atomic_and_counted(
    redis_cluster: LocalCluster, prefix: str
) -> None:
    catalogue = RedisCatalogueStore.from_url(redis_cluster.url, prefix)
    try:
        assert await catalogue.overrides() == (0, {})
        revisions = await asyncio.gather(
            *(catalogue.change(f"a{n}", {"id": f"a{n}", "n": n}, "put") for n in range(10))
        )
        assert sorted(revisions) == list(range(1, 11))
        assert await catalogue.change("a3", None, "gone") == 11
        revision, overrides = await catalogue.overrides()
        assert revision == 11 == await catalogue.revision()
        assert overrides["a3"] is None and overrides["a4"] == {"id": "a4", "n": 4}
        history = await catalogue.history()
        assert len(history) == 11 and history[0]["op"] == "delete"
        assert [e["op"] for e in await catalogue.history("a3")] == ["delete", "put"]
    finally:
        await catalogue.close()


async def test_impact_counts_each_responder_once(redis_cluster: LocalCluster, prefix: str) -> None:
    impact = RedisImpactStore.from_url(redis_cluster.url, prefix)
    try:
        await impact.record_decisions([("a", "web", "model")] * 3 + [("b", "web", "control")])
        responses = [
            ImpactResponse("d1", "a", "web", "model", "click", 0.0, "r1"),
            ImpactResponse("d1", "a", "web", "model", "convert", 10.0, "r2"),
            ImpactResponse("d1", "a", "web", "model", "convert", 5.0, "r3"),
            ImpactResponse("d2", "a", "web", "model", "click", 0.0, "r4"),
        ]
        assert await impact.record_responses(responses) == [True] * 4
        assert await impact.record_responses(responses[1:2]) == [False]  # a replay
        cells = {(c.action_id, c.group): c for c in await impact.cells()}
        assert cells[("a", "model")] == Cell(
            "a", "web", "model", 3, {"click": 2, "accept": 0, "convert": 1}, 15.0, 225.0
        )
        assert cells[("b", "control")].decisions == 1
    finally:
        await impact.close()


async def test_workers_publish_replace_and_expire(redis_cluster: LocalCluster, prefix: str) -> None:
    ops = RedisOpsStore.from_url(redis_cluster.url, prefix)
    try:
        for n in range(3):
            await ops.publish(f"w{n}", {"applied": n, "lag": 0.5})
        await ops.publish("w0", {"applied": 7})  # replaces every field
        assert await ops.workers() == {
            "w0": {"applied": 7.0},
            "w1": {"applied": 1.0, "lag": 0.5},
            "w2": {"applied": 2.0, "lag": 0.5},
        }
        client = await ops.redis()
        assert 0 < await client.ttl(f"{prefix}{{ops}}:worker:w1") <= TTL_S
    finally:
        await ops.close()
