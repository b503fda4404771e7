"""The decision pipeline: request -> features -> candidates -> rules -> scores ->
arbitration -> response -> log. One store read and one model call per decision; a
second store call only when a chosen action must reserve room in a contact cap."""

from __future__ import annotations

import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from engine.decision_log import decision_record
from engine.domain import CustomerState, decision_id
from engine.errors import BadRequest
from engine.holders import LiveState, Snapshot
from engine.log_scheduling import LogScheduler
from engine.ports import EventSink, FeatureStore
from engine.scoring import Scored, Screened, score_many
from engine.selection import DecisionInput, Ranked, Selection, in_control
from rules.catalogue import Catalogue

DAY = 86400.0
LOG_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


@dataclass(slots=True)
class BatchTimes:
    """Where a batch's server-side time went, in seconds (see :mod:`engine.batching`):
    the store read, ranking and answering, and the contact-cap reservations' round trips.
    A decision's figure in ``nba_decision_seconds`` is its batch's forming plus these, so
    they say which part a change moved, under any load."""

    size: int = 0
    forming: float = 0.0
    read: float = 0.0
    ranking: float = 0.0
    reserving: float = 0.0


@dataclass
class DecisionPolicy:
    """Service-level tunables; the catalogue's settings override the hold-out per channel."""

    control_share: float = 0.05
    budget_s: float = 0.020
    selection_draws: int = 100  # Monte-Carlo draws for the logged selection probabilities


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
        self.logs = LogScheduler(self._log)

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

    def budget_for(self, channel: str) -> float:
        """The store's time for one decision on ``channel``: its configured budget, else
        the service's (``NBA_DECISION_BUDGET_MS``)."""
        return self.live.snapshot.catalogue.budget_s(channel, self.policy.budget_s)

    async def decide(self, request: DecisionInput) -> dict[str, Any]:
        """One decision, logged, within its channel's budget."""
        result = (await self.decide_many([request], self.budget_for(request.channel)))[0]
        if isinstance(result, BadRequest):
            raise result
        return result

    async def decide_many(
        self,
        requests: list[DecisionInput | BadRequest],
        budget_s: float | None = None,
        log: bool = True,
        times: BatchTimes | None = None,
    ) -> list[dict[str, Any] | BadRequest]:
        """A batch (email at send time, the page views that arrived together, see
        :mod:`engine.batching`, or one decision): one store read for every customer, and
        each round of cap reservations for all decisions in one more round trip.
        ``budget_s``: how long each of those may take (default five times a single
        decision's budget); ``log=False``: previews, neither logged nor reserving;
        ``times``: filled in with where the time went. Its records are built once no
        decision is under way (:mod:`engine.log_scheduling`)."""
        with self.logs.deciding():
            return await self._decide_many(requests, budget_s, log, times)

    async def _decide_many(
        self,
        requests: list[DecisionInput | BadRequest],
        budget_s: float | None,
        log: bool,
        times: BatchTimes | None,
    ) -> list[dict[str, Any] | BadRequest]:
        budget = self.policy.budget_s * 5 if budget_s is None else budget_s
        started = time.perf_counter()
        now = time.time()
        snap = self.live.snapshot
        out: list[dict[str, Any] | BadRequest] = [  # errors stay in place
            r if isinstance(r, BadRequest) else {} for r in requests
        ]
        valid: list[tuple[int, DecisionInput, str | None]] = []
        for i, request in enumerate(requests):
            if isinstance(request, BadRequest):
                continue
            try:
                placement = self.resolve_placement(
                    snap.catalogue, request.channel, request.placement
                )
            except BadRequest as exc:
                out[i] = exc
                continue
            valid.append((i, request, placement))
        if times is not None:
            times.size = len(requests)
        read_at = time.perf_counter()
        try:  # the store keeps the budget: a read answered at once sets no timer
            states = await self._states([r.customer_id for _, r, _ in valid], budget)
        except Exception:  # the store is away or late: every decision from the fallback path
            fallbacks = []
            took = round((time.perf_counter() - started) * 1000, 3)
            for i, request, placement in valid:
                context = {**request.context, "channel": request.channel, "placement": placement}
                response = self._fallback(snap, request, placement, context, now)
                response["took_ms"] = took
                state = CustomerState(request.customer_id)
                fallbacks.append((snap, response, None, request, context, state, now))
                out[i] = response
            if log and self.sink is not None:
                self.logs.add(fallbacks)
            if times is not None:
                times.read = time.perf_counter() - read_at
            return out
        ranking_at = time.perf_counter()
        items = [
            (
                request,
                placement,
                state,
                {**request.context, "channel": request.channel, "placement": placement},
            )
            for (_, request, placement), state in zip(valid, states, strict=True)
        ]
        work = [
            (
                i,
                request,
                placement,
                state,
                context,
                ranked,
                Selection(snap.catalogue, request, ranked, reserve=log),
            )
            for (i, _, _), (request, placement, state, context), ranked in zip(
                valid, items, self.rank_many(snap, items, now), strict=True
            )
        ]
        asks = {n: w[6].next_ask() for n, w in enumerate(work)}
        reserving = 0.0
        while pending := [(n, ask) for n, ask in asks.items() if ask is not None]:
            asked_at = time.perf_counter()
            try:  # the store keeps the budget, as for the read
                rooms = await self.store.reserve_many(
                    [(work[n][1].customer_id, ask, now) for n, ask in pending], budget
                )
            except Exception:
                rooms = [False] * len(pending)
            reserving += time.perf_counter() - asked_at
            for (n, _), room in zip(pending, rooms, strict=True):
                work[n][6].answer(room)
                asks[n] = work[n][6].next_ask()
        took = round((time.perf_counter() - started) * 1000 / max(len(work), 1), 3)
        logs = []
        for i, request, placement, state, context, ranked, selection in work:
            response = self.respond(snap, request, placement, state, ranked, selection.chosen, now)
            response["took_ms"] = took
            logs.append((snap, response, ranked, request, context, state, now))
            out[i] = response
        if log and self.sink is not None:
            self.logs.add(logs)
        if times is not None:
            times.read, times.reserving = ranking_at - read_at, reserving
            times.ranking = time.perf_counter() - ranking_at - reserving
        return out

    async def _states(self, customer_ids: list[str], budget_s: float) -> list[CustomerState]:
        """Each customer read once: a page's placements arriving together, or the
        customer view's preview for every channel, name the same customer several times
        (one round trip either way; the read and its decoding are what repeats)."""
        unique = list(dict.fromkeys(customer_ids))
        states = await self.store.fetch_many(unique, budget_s)
        if len(unique) == len(customer_ids):
            return states
        read = dict(zip(unique, states, strict=True))
        return [read[customer_id] for customer_id in customer_ids]

    def rank(
        self,
        snap: Snapshot,
        request: DecisionInput,
        placement: str | None,
        state: CustomerState,
        context: Mapping[str, Any],
        now: float,
    ) -> Ranked:
        """Screen, score and order the candidates: everything but I/O."""
        return self.rank_many(snap, [(request, placement, state, context)], now)[0]

    def rank_many(
        self,
        snap: Snapshot,
        items: Sequence[tuple[DecisionInput, str | None, CustomerState, Mapping[str, Any]]],
        now: float,
    ) -> list[Ranked]:
        """Several decisions ranked together (a batch): screened one by one, then scored
        with one model call for all their candidates, then ordered one by one."""
        screened = [self._screen(snap, *item, now) for item in items]
        asks = [
            (s.customer, context, s.eligible)
            for s, (_, _, _, context) in zip(screened, items, strict=True)
            if len(s.eligible)
        ]
        scores = iter(score_many(snap.scorer, asks))
        return [
            self._order(
                snap,
                s,
                request,
                placement,
                context=context,
                now=now,
                scored=next(scores) if len(s.eligible) else None,
            )
            for s, (request, placement, _, context) in zip(screened, items, strict=True)
        ]

    def _screen(
        self,
        snap: Snapshot,
        request: DecisionInput,
        placement: str | None,
        state: CustomerState,
        context: Mapping[str, Any],
        now: float,
    ) -> Screened:
        """Rules and contact policies: which candidates may be shown, and why not."""
        catalogue = snap.catalogue
        customer = state.features()
        idx = catalogue.candidates(request.channel, placement)
        keep, passed = catalogue.screener.screen(idx, customer, context, now)
        blocked = catalogue.contact.blocked(idx, request.channel, state.counters, now)
        for pos in blocked:
            keep[pos] = False
        excluded: list[dict[str, Any]] = []
        if request.explain:
            for out in np.flatnonzero(~keep):
                index = int(idx[out])
                reason = blocked.get(int(out)) or catalogue.screener.reason(index, now, passed)
                excluded.append(
                    {"action_id": catalogue.actions[index].action.id, "excluded_by": reason}
                )
        return Screened(customer, idx[keep], excluded, passed if request.explain else None)

    def _order(
        self,
        snap: Snapshot,
        screened: Screened,
        request: DecisionInput,
        placement: str | None,
        *,
        context: Mapping[str, Any],
        now: float,
        scored: Scored | None,
    ) -> Ranked:
        """Arbitration over the scored candidates, or the hold-out's random order."""
        catalogue = snap.catalogue
        eligible = screened.eligible
        arbitration = catalogue.arbitration(request.channel, placement)
        offsets = moments = None
        if scored is None:
            propensity = priority = weight = np.zeros(0)
        else:
            propensity, offsets, moments = scored
            priority, weight = arbitration.priorities(
                eligible, propensity, screened.customer, context, catalogue.views, now
            )
        group_control = in_control(
            catalogue, self.policy.control_share, request.customer_id, request.channel, now
        )
        if group_control:
            order = list(range(len(eligible)))
            self._rng.shuffle(order)
        else:
            order = np.argsort(-priority, kind="stable").tolist()
        return Ranked(
            eligible,
            propensity,
            weight,
            priority,
            order,
            screened.excluded,
            screened.passed,
            arbitration.diversity,
            group_control,
            offsets,
            moments,
        )

    def respond(
        self,
        snap: Snapshot,
        request: DecisionInput,
        placement: str | None,
        state: CustomerState,
        ranked: Ranked,
        chosen: list[int],
        now: float,
    ) -> dict[str, Any]:
        catalogue = snap.catalogue
        control = ranked.control
        arbitration = catalogue.arbitration(request.channel, placement)
        actions = []
        for rank, pos in enumerate(chosen, start=1):
            index = int(ranked.idx[pos])
            action = catalogue.actions[index].action
            actions.append(
                {
                    "action_id": action.id,
                    "kind": action.kind,
                    "name": action.name,
                    "rank": rank,
                    "score": round(float(ranked.priority[pos]), 6),
                    "propensity": round(float(ranked.propensity[pos]), 6),
                    "value": action.value,
                    "content": action.content,
                    "explanation": self._explain(
                        catalogue, request, state, ranked, pos, arbitration, now
                    )
                    if request.explain
                    else None,
                }
            )
        response = self._envelope(snap, request, placement, "control" if control else "treatment")
        response["actions"] = actions
        if request.explain:
            response["excluded"] = ranked.excluded
            response["candidates"] = [
                {
                    "action_id": catalogue.actions[int(a)].action.id,
                    "propensity": float(ranked.propensity[i]),
                    "context_weight": float(ranked.weight[i]),
                    "priority": float(ranked.priority[i]),
                    "chosen": i in chosen,
                }
                for i, a in enumerate(ranked.idx)
            ]
        return response

    def _explain(
        self,
        catalogue: Catalogue,
        request: DecisionInput,
        state: CustomerState,
        ranked: Ranked,
        pos: int,
        arbitration: Any,
        now: float,
    ) -> dict[str, Any]:
        index = int(ranked.idx[pos])
        item = catalogue.actions[index]
        return {
            "rules_passed": [*item.settled, *catalogue.screener.names(index)],
            "contact_policy": catalogue.contact.state(
                item.action, request.channel, state.counters, now
            ),
            "factors": {
                "propensity": float(ranked.propensity[pos]),
                "context_weight": float(ranked.weight[pos]),
                "value": item.action.value,
                "lever": item.action.lever,
                "kind_weight": float(arbitration.kind_weight[index]),
                "powers": {
                    "propensity": arbitration.config.propensity_power,
                    "value": arbitration.config.value_power,
                    "lever": arbitration.config.lever_power,
                },
            },
        }

    def _envelope(
        self,
        snap: Snapshot,
        request: DecisionInput,
        placement: str | None,
        group: str,
        fallback: bool = False,
    ) -> dict[str, Any]:
        return {
            "decision_id": decision_id(group == "control", request.channel),
            "customer_id": request.customer_id,
            "channel": request.channel,
            "placement": placement,
            "group": group,
            "fallback": fallback,
            "model_version": snap.scorer.version,
            "policy_version": snap.catalogue.version,
        }

    def _fallback(
        self,
        snap: Snapshot,
        request: DecisionInput,
        placement: str | None,
        context: Mapping[str, Any],
        now: float,
    ) -> dict[str, Any]:
        """Default actions of the placement, decided without the store, and screened by
        the rules as for a customer we know nothing of: no consent, no marketing."""
        catalogue = snap.catalogue
        idx = np.asarray(
            [
                i
                for i in catalogue.candidates(request.channel, placement)
                if placement in catalogue.actions[int(i)].action.default_for
            ],
            dtype=np.intp,
        )
        keep, _ = catalogue.screener.screen(idx, {}, context, now)
        defaults = [catalogue.actions[int(i)].action for i in idx[keep]][: request.limit]
        response = self._envelope(snap, request, placement, "treatment", fallback=True)
        response["actions"] = [
            {
                "action_id": a.id,
                "kind": a.kind,
                "name": a.name,
                "rank": rank,
                "score": 0.0,
                "propensity": a.prior,
                "value": a.value,
                "content": a.content,
                "explanation": None,
            }
            for rank, a in enumerate(defaults, start=1)
        ]
        return response

    def _log(
        self,
        snap: Snapshot,
        response: dict[str, Any],
        ranked: Ranked | None,
        request: DecisionInput,
        context: Mapping[str, Any],
        state: CustomerState,
        now: float,
    ) -> None:
        """The decision log: enough to replay, train on, and evaluate policies offline.
        Built after the answer is sent, while no decision is under way (``logs``): the
        caller does not wait for the record, nor for the selection probabilities it
        holds."""
        record = decision_record(
            snap, response, ranked, request, context, state, now, self.policy.selection_draws
        )
        assert self.sink is not None
        self.sink.send_nowait(
            self.decisions_topic, request.customer_id, orjson.dumps(record, option=LOG_OPTIONS)
        )
