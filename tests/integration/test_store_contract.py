"""One contract suite, run against every FeatureStore backend: in memory, a single Redis
and a local three-master Redis Cluster (the same URL-based ``from_url``)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from engine.embedded import StackEndpoints
from engine.ports import FeatureStore
from engine.writes import Append, EventWrites, Increment, Latest, Put, Stamp, WindowCount
from feature_store.memory_store import MemoryFeatureStore
from feature_store.redis_store import RedisFeatureStore
from rules.contact import Reservation
from tests.cluster.cluster import local_cluster

REDIS_BACKENDS = [
    pytest.param("redis", marks=pytest.mark.integration),
    pytest.param("cluster", marks=pytest.mark.integration),
]


def redis_url(request: pytest.FixtureRequest) -> str:
    if request.param == "cluster":
        return local_cluster(request).url
    endpoints: StackEndpoints = request.getfixturevalue("stack")
    return endpoints.redis_url


@pytest.fixture(params=["memory", *REDIS_BACKENDS])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[FeatureStore]:
    if request.param == "memory":
        yield MemoryFeatureStore()
        return
    redis_store = RedisFeatureStore.from_url(redis_url(request))
    yield redis_store
    await redis_store.close()


@pytest.fixture(params=REDIS_BACKENDS)
async def redis_store(request: pytest.FixtureRequest) -> AsyncIterator[RedisFeatureStore]:
    store = RedisFeatureStore.from_url(redis_url(request))
    yield store
    await store.close()


def cid() -> str:
    return f"sc-{uuid.uuid4().hex[:12]}"


async def test_unknown_customer_is_empty_not_an_error(store: FeatureStore) -> None:
    state = await store.fetch(cid())
    assert not state.known and state.profile == {} and state.counters == {}


async def test_writes_are_applied_and_read_back_with_types(store: FeatureStore) -> None:
    customer = cid()
    writes = (
        Put("profile", "age", 41),
        Put("profile", "vip", True),
        Put("profile", "seg", "a"),
        Increment("behaviour", "views_shoes", 2),
        Increment("counters", "x:click"),
        Append("history", {"type": "contact", "at": 1.0}),
    )
    assert await store.apply([EventWrites(customer, "e1", writes)]) == [True]
    state = await store.fetch(customer)
    assert state.known
    assert state.profile == {"age": 41, "vip": True, "seg": "a"}
    assert state.behaviour["views_shoes"] == 2
    assert state.counters["x:click"] == 1.0
    assert await store.history(customer) == [{"type": "contact", "at": 1.0}]


async def test_a_replayed_event_changes_nothing(store: FeatureStore) -> None:
    customer = cid()
    event = EventWrites(customer, "same-id", (Increment("counters", "a:impression"),))
    assert await store.apply([event, event]) == [True, False]
    assert await store.apply([event]) == [False]
    assert (await store.fetch(customer)).counters["a:impression"] == 1.0


async def test_history_is_bounded_newest_first(store: FeatureStore) -> None:
    customer = cid()
    batch = [
        EventWrites(customer, f"e{i}", (Append("history", {"n": i}, keep=3),)) for i in range(5)
    ]
    await store.apply(batch)
    assert [r["n"] for r in await store.history(customer)] == [4, 3, 2]


async def test_erase_removes_every_trace(store: FeatureStore) -> None:
    customer, other = cid(), cid()
    for who in (customer, other):
        await store.apply(
            [
                EventWrites(
                    who,
                    "e1",
                    (
                        Put("profile", "age", 1),
                        Increment("counters", "a:click"),
                        Append("history", {"n": 1}),
                    ),
                )
            ]
        )
    assert await store.erase(customer) > 0
    state = await store.fetch(customer)
    assert not state.known and await store.history(customer) == []
    assert (await store.fetch(other)).known
    # the idempotency markers went too: the same event id applies again after erasure
    assert await store.apply([EventWrites(customer, "e1", (Put("profile", "age", 2),))]) == [True]


async def test_redis_erasure_leaves_no_key(redis_store: RedisFeatureStore) -> None:
    customer = cid()
    await redis_store.apply(
        [EventWrites(customer, "e1", (Put("profile", "age", 1), Append("history", {"n": 1})))]
    )
    await redis_store.erase(customer)
    # a cluster client's SCAN visits every master
    left = [k async for k in redis_store.client.scan_iter(match=f"*{customer}*")]
    assert left == []


async def test_flushed_scripts_are_loaded_again(redis_store: RedisFeatureStore) -> None:
    customer = cid()
    assert await redis_store.apply([EventWrites(customer, "e1", (Increment("counters", "n"),))])
    await redis_store.client.script_flush()  # every master of a cluster
    batch = [EventWrites(customer, f"e{n}", (Increment("counters", "n"),)) for n in (1, 2)]
    assert await redis_store.apply(batch) == [False, True]
    assert await redis_store.reserve(customer, [Reservation("cap:x", 1, 60.0)], 1.0)
    assert (await redis_store.fetch(customer)).counters["n"] == 2.0


async def test_stamps_keep_the_newest_times(store: FeatureStore) -> None:
    customer = cid()
    batch = [
        EventWrites(customer, f"s{i}", (Stamp("counters", "a:imp_ts", float(t), keep=3),))
        for i, t in enumerate([5, 1, 4, 2, 3])
    ]
    await store.apply(batch)
    assert (await store.fetch(customer)).counters["a:imp_ts"] == [3.0, 4.0, 5.0]


async def test_latest_never_moves_back_in_event_time(store: FeatureStore) -> None:
    """Recency features keep the latest event time's value whatever the arrival order,
    inside one call and across calls; a tie goes to the later arrival."""
    customer = cid()

    def seen(n: int, at: float, category: str) -> EventWrites:
        writes = (
            Latest("behaviour", "last_seen", at, at, "last_seen"),
            Latest("behaviour", "last_category", category, at, "last_category_at"),
            Latest("profile", "consent_email", category == "b", at, "consent_email_at"),
        )
        return EventWrites(customer, f"l{n}", writes)

    await store.apply([seen(0, 100.0, "a"), seen(1, 300.0, "b"), seen(2, 200.0, "c")])
    state = await store.fetch(customer)
    assert state.behaviour["last_seen"] == 300.0 and state.behaviour["last_category"] == "b"
    assert state.profile == {"consent_email": True, "consent_email_at": 300.0}
    await store.apply([seen(3, 250.0, "d"), seen(4, 300.0, "e"), seen(5, 50.0, "f")])
    state = await store.fetch(customer)
    assert state.behaviour["last_seen"] == 300.0 and state.behaviour["last_category"] == "e"
    assert state.behaviour["last_category_at"] == 300.0
    assert state.profile == {"consent_email": False, "consent_email_at": 300.0}


async def test_reserve_is_all_or_nothing(store: FeatureStore) -> None:
    customer = cid()
    now = 1_000_000.0
    week = Reservation("cap:email:m", 2, 7 * 86400.0)
    total = Reservation("cap:customer:all", 3, 7 * 86400.0)
    assert await store.reserve(customer, [week, total], now)
    assert await store.reserve(customer, [week, total], now + 1)
    assert not await store.reserve(customer, [week, total], now + 2)  # week is full
    assert await store.reserve(customer, [total], now + 3)  # total had room: 2 of 3 used
    assert not await store.reserve(customer, [total], now + 4)
    later = now + 7 * 86400.0 + 10  # the window slid past every stamp
    assert await store.reserve(customer, [week, total], later)
    counters = (await store.fetch(customer)).counters
    assert counters["cap:email:m"] == [later]


async def test_windowed_counters_read_back_per_window(store: FeatureStore) -> None:
    import time

    from engine.features import field_layout, load_features

    behaviour = load_features().views.behaviour
    layout = field_layout(behaviour.widths, behaviour.buckets)
    customer = cid()
    now = time.time()
    ages = [10, 20, 200, 2000, 20000, 200000]  # seconds ago
    await store.apply(
        [
            EventWrites(
                customer, f"w{i}", (WindowCount("behaviour", "views_{w}_shoes", now - a, layout),)
            )
            for i, a in enumerate(ages)
        ]
    )
    features = (await store.fetch(customer)).behaviour
    assert features["views_5m_shoes"] == 3  # 10, 20 and 200 s ago
    assert features["views_1h_shoes"] == 4
    assert features["views_24h_shoes"] == 5
    assert features["views_7d_shoes"] == 6


async def test_a_batch_read_gives_each_customer_their_own_counters(store: FeatureStore) -> None:
    import time

    from engine.features import field_layout, load_features

    behaviour = load_features().views.behaviour
    layout = field_layout(behaviour.widths, behaviour.buckets)
    customers = [cid() for _ in range(5)]
    now = time.time() - 5
    writes = []
    for n, customer in enumerate(customers):  # customer n: n views of shoes, n % 2 of bags
        for i in range(n):
            writes.append(
                EventWrites(
                    customer, f"s{i}", (WindowCount("behaviour", "views_{w}_shoes", now, layout),)
                )
            )
        if n % 2:
            writes.append(
                EventWrites(
                    customer, "b", (WindowCount("behaviour", "views_{w}_bags", now, layout),)
                )
            )
    await store.apply(writes)
    states = await store.fetch_many(customers)
    for n, state in enumerate(states):
        assert state.customer_id == customers[n]
        assert state.behaviour.get("views_1h_shoes", 0) == n
        assert state.behaviour.get("views_1h_bags", 0) == n % 2
        assert state.behaviour == (await store.fetch(customers[n])).behaviour


async def test_a_mixed_batch_leaves_redis_as_the_memory_twin(
    redis_store: RedisFeatureStore,
) -> None:
    """The Redis store applies a batch per customer in one script call (window counters
    read and written once per call); the result must be the memory store's, event by
    event: replays inside and across batches, time going back, a plain write to a
    counted field, sessions, and several customers interleaved."""
    import time

    from engine.features import field_layout, load_features
    from engine.writes import Session

    behaviour = load_features().views.behaviour
    layout = field_layout(behaviour.widths, behaviour.buckets)
    twin = MemoryFeatureStore()
    customers = [cid(), cid(), cid()]
    now = time.time()

    def event(n: int, at: float) -> EventWrites:
        who = customers[n % 3]
        writes = (
            Session("behaviour", "session_pages", at, 1800.0),
            Latest("behaviour", "last_seen", at, at, "last_seen"),
            Latest("behaviour", "last_category", f"c{n}", at, "last_category_at"),
            WindowCount("behaviour", "page_view_{w}", at, layout),
            WindowCount("behaviour", "views_{w}_shoes", at - 400 * (n % 4), layout),
            Increment("behaviour", "views_total"),
            Stamp("counters", "a:imp_ts", float(int(at)), 3),  # Lua's cjson keeps 14 digits
            Append("history", {"n": n}, keep=4),
        )
        if n == 7:  # a plain write to a field counted in the same call
            writes += (Put("behaviour", "page_view_{w}", "reset"),)
        return EventWrites(who, f"m{n}", writes)

    ats = [now - 5000, now - 4000, now - 10, now - 3000, now, now - 1, now + 2, now - 2000]
    first = [event(n, at) for n, at in enumerate(ats)]
    second = [first[2], event(8, now - 7200), first[2], event(9, now - 60), first[0]]
    for batch in (first, second):
        assert await redis_store.apply(batch) == await twin.apply(batch)
    for who in customers:
        got, want = await redis_store.fetch(who), await twin.fetch(who)
        for state in (got, want):  # read-time recency: the two reads differ by a moment
            state.behaviour.pop("minutes_since_seen", None)
        # window sums weigh the oldest bucket by the read time: equal up to that moment
        assert got.behaviour.keys() == want.behaviour.keys()
        for name, value in want.behaviour.items():
            close = isinstance(value, float)
            assert got.behaviour[name] == (pytest.approx(value, abs=1e-3) if close else value)
        assert (got.profile, got.counters) == (want.profile, want.counters)
        assert await redis_store.history(who) == await twin.history(who)
