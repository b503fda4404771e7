"""The decision pipeline: request -> features -> candidates -> rules -> scores ->
arbitration -> response -> log. One store read and one model call per decision."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from engine.domain import CustomerState
from engine.errors import BadRequest
from engine.holders import LiveState, Snapshot
from engine.ports import EventSink, FeatureStore
from rules.catalogue import Catalogue, CompiledAction

DAY = 86400.0


@dataclass(frozen=True, slots=True)
class DecisionInput:
    customer_id: str
    channel: str
    placement: str | None = None
    context: Mapping[str, Any] = field(default_factory=dict)
    limit: int = 1
    explain: bool = False


@dataclass
class DecisionPolicy:
    """Tunables of arbitration and the hold-out; per channel where it matters."""

    control_share: float = 0.05
    control_salt: str = "nba-control-v1"
    budget_s: float = 0.020
    context_weights: dict[str, float] = field(default_factory=dict)

    def in_control(self, customer_id: str, channel: str) -> bool:
        """Sticky hold-out: a salted hash of the customer id, per channel."""
        digest = hashlib.blake2b(
            f"{self.control_salt}:{channel}:{customer_id}".encode(), digest_size=8
        ).digest()
        return int.from_bytes(digest, "big") / 2**64 < self.control_share


class Decider:
    def __init__(
        self,
        store: FeatureStore,
        live: LiveState,
        sink: EventSink | None,
        policy: DecisionPolicy,
        decisions_topic: str = "nba.decisions",
    ) -> None:
        self.store = store
        self.live = live
        self.sink = sink
        self.policy = policy
        self.decisions_topic = decisions_topic
        self._rng = random.Random()

    def resolve_placement(
        self, catalogue: Catalogue, channel: str, placement: str | None
    ) -> str | None:
        channels = catalogue.channel_names()
        if channels and channel not in channels:
            raise BadRequest(f"unknown channel {channel!r}; known: {sorted(channels)}", "channel")
        if placement is None:
            return catalogue.default_placement(channel)
        known = catalogue.placements(channel)
        if channels and placement not in known:
            raise BadRequest(
                f"unknown placement {placement!r} for {channel}; known: {known}", "placement"
            )
        return placement

    async def decide(self, request: DecisionInput, log: bool = True) -> dict[str, Any]:
        started = time.perf_counter()
        now = time.time()
        snap = self.live.snapshot
        placement = self.resolve_placement(snap.catalogue, request.channel, request.placement)
        state, fallback = await self._fetch(request.customer_id)
        context = {**request.context, "channel": request.channel, "placement": placement}
        if fallback:
            response, record = self._fallback(snap, request, placement)
        else:
            response, record = self._decide(snap, request, placement, state, context, now)
        response["took_ms"] = round((time.perf_counter() - started) * 1000, 3)
        if log:
            self._log(response, record, request, context, state)
        return response

    async def _fetch(self, customer_id: str) -> tuple[CustomerState, bool]:
        try:
            state = await asyncio.wait_for(self.store.fetch(customer_id), self.policy.budget_s)
            return state, False
        except Exception:  # any store failure or timeout: answer from the fallback path
            return CustomerState(customer_id), True

    def _decide(
        self,
        snap: Snapshot,
        request: DecisionInput,
        placement: str | None,
        state: CustomerState,
        context: dict[str, Any],
        now: float,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        customer = state.features()
        eligible: list[CompiledAction] = []
        excluded: list[dict[str, Any]] = []
        passed: dict[str, list[str]] = {}
        explain = request.explain
        for item in snap.catalogue.candidates(request.channel, placement):
            reason = self._exclusion(item, customer, context, state.counters, now)
            if reason is None:
                eligible.append(item)
                if explain:
                    passed[item.action.id] = [*item.settled, *(c.name for c in item.checks)]
            elif explain:
                excluded.append({"action_id": item.action.id, "excluded_by": reason})
        group = (
            "control"
            if self.policy.in_control(request.customer_id, request.channel)
            else "treatment"
        )
        scores: list[dict[str, Any]] = []
        chosen: list[tuple[CompiledAction, float, float, float]] = []
        if eligible:
            propensity = snap.scorer.score(customer, context, [a.index for a in eligible])
            weight = self.policy.context_weights.get(request.channel, 1.0)
            values = np.asarray([a.action.value for a in eligible])
            levers = np.asarray([a.action.lever for a in eligible])
            priority = propensity * weight * values * levers
            k = min(request.limit, len(eligible))
            if group == "control":
                order = self._rng.sample(range(len(eligible)), k)
                chance = k / len(eligible)
            else:
                order = [int(i) for i in np.argsort(-priority, kind="stable")[:k]]
                chance = 1.0
            picked = set(order)
            for i, item in enumerate(eligible):
                scores.append(
                    {
                        "action_id": item.action.id,
                        "propensity": float(propensity[i]),
                        "score": float(priority[i]),
                        "p_chosen": chance if (group == "control" or i in picked) else 0.0,
                    }
                )
            chosen = [
                (eligible[i], float(priority[i]), float(propensity[i]), weight) for i in order
            ]
        actions = []
        for rank, (item, score, prop, weight) in enumerate(chosen, start=1):
            action = item.action
            explanation = None
            if explain:
                explanation = {
                    "rules_passed": passed.get(action.id, []),
                    "contact_policy": self._policy_state(item, state.counters, now),
                    "factors": {
                        "propensity": prop,
                        "context_weight": weight,
                        "value": action.value,
                        "lever": action.lever,
                    },
                }
            actions.append(
                {
                    "action_id": action.id,
                    "kind": action.kind,
                    "name": action.name,
                    "rank": rank,
                    "score": round(score, 6),
                    "propensity": round(prop, 6),
                    "value": action.value,
                    "content": action.content,
                    "explanation": explanation,
                }
            )
        response = self._envelope(snap, request, placement, group, False)
        response["actions"] = actions
        if explain:
            response["excluded"] = excluded
        return response, {"candidates": scores}

    def _exclusion(
        self,
        item: CompiledAction,
        customer: Mapping[str, Any],
        context: Mapping[str, Any],
        counters: Mapping[str, float],
        now: float,
    ) -> str | None:
        if not item.in_window(now):
            return "validity_window"
        for check in item.checks:
            if not check.expression.test(customer, context, item.view, now):
                return check.name
        policy = item.action.contact_policy
        if policy is not None and counters:
            aid = item.action.id
            if policy.suppress_after_decline_days is not None:
                last = counters.get(f"{aid}:last_decline")
                if last is not None and now - last < policy.suppress_after_decline_days * DAY:
                    return "contact_policy:suppressed_after_decline"
            cap = policy.max_impressions
            if cap is not None:
                last_shown = counters.get(f"{aid}:last_impression")
                shown = counters.get(f"{aid}:impression", 0.0)
                if (
                    last_shown is not None
                    and now - last_shown < cap.days * DAY
                    and shown >= cap.count
                ):
                    return "contact_policy:max_impressions"
        return None

    @staticmethod
    def _policy_state(
        item: CompiledAction, counters: Mapping[str, float], now: float
    ) -> dict[str, Any]:
        aid = item.action.id
        last_decline = counters.get(f"{aid}:last_decline")
        return {
            "impressions": counters.get(f"{aid}:impression", 0.0),
            "declines": counters.get(f"{aid}:decline", 0.0),
            "days_since_decline": None
            if last_decline is None
            else round((now - last_decline) / DAY, 3),
        }

    def _envelope(
        self,
        snap: Snapshot,
        request: DecisionInput,
        placement: str | None,
        group: str,
        fallback: bool,
    ) -> dict[str, Any]:
        return {
            "decision_id": "d-" + os.urandom(12).hex(),
            "customer_id": request.customer_id,
            "channel": request.channel,
            "placement": placement,
            "group": group,
            "fallback": fallback,
            "model_version": snap.scorer.version,
            "policy_version": snap.catalogue.version,
        }

    def _fallback(
        self, snap: Snapshot, request: DecisionInput, placement: str | None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Default actions of the placement, decided without the store."""
        defaults = [
            a
            for a in snap.catalogue.candidates(request.channel, placement)
            if placement in a.action.default_for
        ][: request.limit]
        response = self._envelope(snap, request, placement, "treatment", True)
        response["actions"] = [
            {
                "action_id": a.action.id,
                "kind": a.action.kind,
                "name": a.action.name,
                "rank": rank,
                "score": 0.0,
                "propensity": a.action.prior,
                "value": a.action.value,
                "content": a.action.content,
                "explanation": None,
            }
            for rank, a in enumerate(defaults, start=1)
        ]
        return response, {"candidates": []}

    def _log(
        self,
        response: dict[str, Any],
        log: dict[str, Any],
        request: DecisionInput,
        context: Mapping[str, Any],
        state: CustomerState,
    ) -> None:
        if self.sink is None:
            return
        record = {
            "decision_id": response["decision_id"],
            "timestamp": time.time(),
            "customer_id": request.customer_id,
            "channel": request.channel,
            "placement": response["placement"],
            "context": context,
            "features": state.features(),
            "group": response["group"],
            "fallback": response["fallback"],
            "model_version": response["model_version"],
            "policy_version": response["policy_version"],
            "candidates": log["candidates"],
            "chosen": [a["action_id"] for a in response["actions"]],
        }
        self.sink.send_nowait(self.decisions_topic, request.customer_id, orjson.dumps(record))
