"""The stream worker: a faust-streaming app that keeps the feature store fresh.

Each agent reads raw bytes, validates them into an event, turns the event into
writes (``streams.handlers``) and applies a batch of them with one pipelined call.
An event that does not validate (``engine.events``: its fields, its time, a consent's
``granted``), or whose message key is not its ``customer_id``, goes to the dead-letter
topic with the reason and the worker carries on. Effects are idempotent on ``event_id``
(the store's marker), so a redelivered batch after a crash changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

import faust
import orjson
from faust.types import EventT
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from engine.config import Settings
from engine.domain import parse_decision_id
from engine.events import ClickstreamEvent, CrmEvent, ResponseEvent, describe
from engine.ports import FeatureStore, ImpactStore
from engine.writes import RESPONSE_OUTCOMES, EventWrites, ImpactResponse
from streams.batches import BackgroundBatches
from streams.handlers import clickstream_writes, crm_writes, response_writes
from streams.lag import consumer_lag
from streams.learner import Learner
from streams.log_reader import LOG_TOPIC, DecisionLogReader, log_group
from streams.stats import StreamStats
from streams.transport import WorkerApp

log = logging.getLogger("nba.worker")
E = TypeVar("E", bound=BaseModel)
BATCH_SIZE = 1000  # events per store call at most: a batch is what arrived meanwhile
BATCH_LINGER_S = 0.005  # a batch waits this long for more events (not while full)
MAX_EVENT_BYTES = 256 * 1024
WORKER_TOPICS = ("crm", "clickstream", "responses", "decisions")  # what a worker reads
COMMIT_EVERY = 50_000
WORKER_GROUP = "nba-worker"
# the freshness metric measures the pipeline (event time to stored): an event older than
# this when stored is a backfill or a replay, counted as applied but left out of it (the
# consumer lag shows a backlog), so one ancient event does not make the quantiles
FRESHNESS_HORIZON_S = 24 * 3600.0


def key_problem(key: bytes | None, customer_id: str) -> str | None:
    """Why a record's message key does not fit its event, if it does not: the key is the
    customer id (contract §4), which keeps a customer's events in order on one partition.

    >>> key_problem(b"c-1", "c-1") is None
    True
    >>> key_problem(None, "c-1")
    'message key: missing; it must be the customer_id'
    >>> key_problem(b"c-2", "c-1")
    "message key: 'c-2' is not the customer_id 'c-1'"
    """
    if key is None:
        return "message key: missing; it must be the customer_id"
    if key != customer_id.encode():
        shown = key[:160].decode("utf-8", "replace")
        return f"message key: {shown!r} is not the customer_id {customer_id!r}"
    return None


def fresh_times(times: list[float], now: float) -> list[float]:
    """The event times the freshness metric counts (see :data:`FRESHNESS_HORIZON_S`)."""
    return [t for t in times if now - t <= FRESHNESS_HORIZON_S]


def worker_group(topic_prefix: str) -> str:
    """One consumer group per deployment (topic prefix): workers of another prefix on
    the same broker neither share nor rebalance this one's partitions."""
    return f"{WORKER_GROUP}-{topic_prefix.rstrip('.') or 'default'}"


def reading_groups(topic_prefix: str) -> dict[str, str]:
    """The consumer group that reads each of the worker's topics: the agents share the
    worker group, the decision log has its own (:mod:`streams.log_reader`)."""
    group = worker_group(topic_prefix)
    return {
        f"{topic_prefix}{name}": log_group(group) if name == LOG_TOPIC else group
        for name in WORKER_TOPICS
    }


def decode_event(raw: Any, model: type[E]) -> tuple[E | None, str | None]:
    """The event, or the reason it is refused (for the dead-letter topic)."""
    if not isinstance(raw, bytes | bytearray):
        return None, "value is not bytes"
    if len(raw) > MAX_EVENT_BYTES:
        return None, f"event of {len(raw)} bytes is over the {MAX_EVENT_BYTES}-byte limit"
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return None, f"not valid JSON: {exc}"
    if not isinstance(payload, dict):
        return None, "event must be a JSON object"
    try:
        return model.model_validate(payload), None
    except ValidationError as exc:
        return None, describe(exc)


async def _until_stored(
    name: str, handle: Callable[[list[E]], Awaitable[int]], events: list[E]
) -> int:
    """Retry a batch until its effects are stored: the events are acknowledged (and
    their offsets committed) only after that, and the writes are idempotent."""
    delay = 0.1
    while True:
        try:
            return await handle(events)
        except Exception as exc:
            log.error("storing a %s batch failed (%s); retrying in %.1f s", name, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


class DecisionRecord(BaseModel):
    """The part of a decision log record the impact counters need."""

    model_config = ConfigDict(extra="ignore")
    decision_id: str
    timestamp: datetime
    channel: str
    group: str
    fallback: bool = False
    chosen: list[str] = Field(default_factory=list)
    features: dict[str, Any] = Field(default_factory=dict)
    context: dict[str, Any] = Field(default_factory=dict)
    learn: list[dict[str, Any]] | None = None


def impact_of_responses(events: list[ResponseEvent]) -> list[ImpactResponse]:
    """Responses to a decision of the engine, in the outcomes the uplift report counts."""
    found = []
    for event in events:
        origin = parse_decision_id(event.decision_id)
        if origin is None or event.outcome not in RESPONSE_OUTCOMES:
            continue
        group, channel = origin
        found.append(
            ImpactResponse(
                str(event.decision_id),
                event.action_id,
                channel,
                group,
                event.outcome,
                event.value or 0.0,
                event.event_id,
            )
        )
    return found


def create_worker_app(
    settings: Settings,
    brokers: str,
    store_factory: Callable[[], FeatureStore],
    impact_factory: Callable[[], ImpactStore] | None = None,
    app_id: str | None = None,
    publish: Callable[[str, dict[str, float]], Awaitable[None]] | None = None,
    learner_factory: Callable[[], Awaitable[Learner]] | None = None,
) -> faust.App:
    """A faust app with short group timeouts (the embedded broker joins in ~3 s)."""
    app_id = app_id or worker_group(settings.topic_prefix)
    datadir = settings.data_dir / "worker"
    datadir.mkdir(parents=True, exist_ok=True)
    app = WorkerApp(
        app_id,
        datadir=str(datadir),
        broker=",".join(f"kafka://{b}" for b in brokers.split(",")),
        value_serializer="raw",
        key_serializer="raw",
        store="memory://",
        web_enabled=False,
        topic_partitions=4,
        topic_allow_declare=True,
        broker_rebalance_timeout=3.0,
        broker_session_timeout=6.0,
        broker_heartbeat_interval=1.0,
        # offsets are committed every 0.5 s, not every 100 events: each commit costs a
        # broker request and a log table; a crash replays at most 0.5 s (idempotent)
        broker_commit_every=COMMIT_EVERY,
        broker_commit_interval=0.5,
        consumer_auto_offset_reset="earliest",
        table_cleanup_interval=3600.0,
        producer_linger_ms=1,
    )
    dlq = app.topic(settings.topic("dlq"), value_serializer="raw", key_serializer="raw")
    state: dict[str, Any] = {}
    stats = StreamStats()
    worker_id = f"{socket.gethostname()}-{os.getpid()}"
    groups = {
        topic: log_group(app_id) if topic == settings.topic(LOG_TOPIC) else app_id
        for topic in (settings.topic(t) for t in WORKER_TOPICS)
    }

    def store() -> FeatureStore:
        if "store" not in state:
            state["store"] = store_factory()
        found: FeatureStore = state["store"]
        return found

    async def learner() -> Learner | None:
        if learner_factory is not None and "learner" not in state:
            state["learner"] = await learner_factory()
        found: Learner | None = state.get("learner")
        return found

    def impact() -> ImpactStore | None:
        if impact_factory is not None and "impact" not in state:
            state["impact"] = impact_factory()
        return state.get("impact")

    async def dead_letter(topic: str, key: bytes | None, raw: Any, reason: str) -> None:
        body = raw.decode("utf-8", "replace") if isinstance(raw, bytes | bytearray) else str(raw)
        record = {"topic": topic, "reason": reason, "value": body[:4096]}
        await dlq.send(key=key, value=orjson.dumps(record))
        stats.dead_lettered(topic)  # nba_stream_dead_letters_total
        log.warning("dead-lettered an event from %s: %s", topic, reason)

    def agent_for(name: str, model: type[E], handle: Callable[[list[E]], Awaitable[int]]) -> None:
        topic = app.topic(settings.topic(name), value_serializer="raw", key_serializer="raw")

        async def process(stream: faust.StreamT[Any]) -> None:
            # acknowledged by hand, each event after its batch is stored: offsets are
            # committed after the writes (faust commits up to the first unacked offset)
            events = stream.noack()  # type: ignore[attr-defined]

            async def store_batch(batch: list[tuple[EventT[Any], E]]) -> None:
                parsed_events = [parsed for _, parsed in batch]
                applied = await _until_stored(name, handle, parsed_events)
                times = [e.timestamp.timestamp() for e in parsed_events]  # type: ignore[attr-defined]
                stats.observe(name, fresh_times(times, time.time()), applied)
                for event, _ in batch:
                    await events.ack(event)

            batches = BackgroundBatches(store_batch, BATCH_SIZE, BATCH_LINGER_S)
            try:
                async for event in events.events():
                    parsed, reason = decode_event(event.value, model)
                    if parsed is not None:
                        reason = key_problem(event.key, parsed.customer_id)  # type: ignore[attr-defined]
                        parsed = None if reason else parsed
                    if parsed is None:
                        await dead_letter(name, event.key, event.value, reason or "invalid")
                        await events.ack(event)
                    else:
                        await batches.put((event, parsed))
            finally:
                await batches.close()

        app.agent(topic, name=f"nba-{name}")(process)

    def writes_of(to_writes: Callable[[E], EventWrites]) -> Callable[[list[E]], Awaitable[int]]:
        async def handle(events: list[E]) -> int:
            return sum(await store().apply([to_writes(e) for e in events]))

        return handle

    async def responses(events: list[ResponseEvent]) -> int:
        applied = await store().apply([response_writes(e) for e in events])
        teacher = await learner()
        if teacher is not None:
            for event, new in zip(events, applied, strict=True):
                if new:
                    teacher.responded(event.decision_id, event.action_id, event.outcome)
        counter = impact()
        if counter is not None:  # idempotent on its own: a retried batch counts once
            await counter.record_responses(impact_of_responses(events))
        return sum(applied)

    async def decisions(records: list[DecisionRecord]) -> int:
        teacher = await learner()
        if teacher is not None:
            for record in records:
                teacher.shown(
                    record.decision_id,
                    record.learn,
                    record.features,
                    record.context,
                    record.fallback,
                )
        counter = impact()
        if counter is None:
            return 0
        chosen = [
            (action, r.channel, r.group) for r in records if not r.fallback for action in r.chosen
        ]
        await counter.record_decisions(chosen)
        return len(records)

    if learner_factory is not None:

        @app.timer(1.0)  # type: ignore[untyped-decorator]
        async def learn() -> None:
            teacher = await learner()
            if teacher is not None:
                try:
                    await teacher.flush()
                except Exception as exc:
                    log.error("adaptive learning step failed: %s", exc)

    if publish is not None:

        @app.timer(1.0)  # type: ignore[untyped-decorator]
        async def report() -> None:
            with contextlib.suppress(Exception):
                await publish(worker_id, stats.snapshot())

        @app.timer(5.0)  # type: ignore[untyped-decorator]
        async def measure_lag() -> None:
            with contextlib.suppress(Exception):
                lag = await consumer_lag(brokers, groups, list(groups))
                stats.lag = {t.removeprefix(settings.topic_prefix): n for t, n in lag.items()}

    agent_for("crm", CrmEvent, writes_of(crm_writes))
    agent_for("clickstream", ClickstreamEvent, writes_of(clickstream_writes))
    agent_for("responses", ResponseEvent, responses)
    if impact_factory is not None:
        reader = DecisionLogReader(
            brokers,
            settings.topic(LOG_TOPIC),
            log_group(app_id),
            lambda raw: decode_event(raw, DecisionRecord),
            lambda records: _until_stored(LOG_TOPIC, decisions, records),
            functools.partial(dead_letter, LOG_TOPIC),  # named as the agents name theirs
            lambda records, applied: stats.observe(
                LOG_TOPIC,
                fresh_times([r.timestamp.timestamp() for r in records], time.time()),
                applied,
            ),
        )

        @app.task  # type: ignore[untyped-decorator]
        async def read_decision_log() -> None:
            await reader.run()

    return app
