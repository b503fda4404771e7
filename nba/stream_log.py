"""The engine's own decision log joined with the responses, read from the broker: the
history ``nba train`` learns from, also written as a logged-decision file (contract §6)
for ``nba evaluate``."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from models.training import TrainingSet

POSITIVE = frozenset({"click", "accept", "convert"})


async def read_topic(brokers: str, topic: str) -> list[dict[str, Any]]:
    """Every record of a topic up to its end offsets when the read starts."""
    consumer = AIOKafkaConsumer(bootstrap_servers=brokers.split(","), enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not partitions:
            return []
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        out: list[dict[str, Any]] = []
        done = {tp for tp in partitions if ends[tp] == 0}
        while len(done) < len(partitions):
            batch = await consumer.getmany(timeout_ms=1000)
            for tp, records in batch.items():
                for record in records:
                    try:
                        out.append(orjson.loads(record.value))
                    except orjson.JSONDecodeError:
                        continue
                if await consumer.position(tp) >= ends[tp]:
                    done.add(tp)
            if not batch:
                done |= {tp for tp in partitions if await consumer.position(tp) >= ends[tp]}
        return out
    finally:
        await consumer.stop()


def join(decisions: list[dict[str, Any]], responses: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per shown action (contract §6's fields), reward 1 if it got a positive
    response. Its ``propensity`` is the record's ``p_chosen`` for that action: its chance
    of being among the actions the decision answered with (with a ``limit`` above 1, of
    being in the answer at all, whatever its ``position``); 1 for a placement default
    that was not a candidate."""
    positive = {
        (r.get("decision_id"), r.get("action_id"))
        for r in responses
        if r.get("outcome") in POSITIVE
    }
    rows = []
    for d in decisions:
        if d.get("fallback") or not d.get("chosen"):
            continue
        candidates = d.get("candidates") or {}
        chance = dict(
            zip(candidates.get("action_ids", []), candidates.get("p_chosen", []), strict=False)
        )
        for position, action_id in enumerate(d["chosen"], start=1):
            rows.append(
                {
                    "timestamp": d["timestamp"],
                    "customer_id": d["customer_id"],
                    "channel": d["channel"],
                    "placement": d.get("placement"),
                    "features": d.get("features") or {},
                    "context": d.get("context") or {},
                    "action_id": action_id,
                    "position": position,
                    "propensity": float(chance.get(action_id, 1.0)) or 1.0,
                    "reward": 1.0 if (d["decision_id"], action_id) in positive else 0.0,
                }
            )
    return rows


def training_set(rows: list[dict[str, Any]], views: Mapping[str, Mapping[str, Any]]) -> TrainingSet:
    data = TrainingSet()
    for row in rows:
        context = {**row["context"], "channel": row["channel"], "placement": row["placement"]}
        action = {"action_id": row["action_id"], **views.get(row["action_id"], {})}
        data.add(row["features"], context, action, int(row["reward"] > 0), float(row["timestamp"]))
    return data


def read_history(brokers: str, prefix: str) -> list[dict[str, Any]]:
    async def both() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        return await read_topic(brokers, prefix + "decisions"), await read_topic(
            brokers, prefix + "responses"
        )

    decisions, responses = asyncio.run(both())
    return join(decisions, responses)


def write_log(rows: list[dict[str, Any]], path: Path) -> None:
    with path.open("wb") as handle:
        for row in rows:
            handle.write(orjson.dumps({k: v for k, v in row.items() if k != "context"}) + b"\n")
