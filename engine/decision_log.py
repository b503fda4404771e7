"""The decision log record: what was decided, from what, and how likely each candidate
was to be chosen, so that decisions can be replayed, trained on and evaluated offline
(off-policy evaluation needs the probabilities; the adaptive learner the offsets).

``candidates.p_chosen`` is, for every policy, each candidate's probability of being among
the actions the decision answers with (at most the request's ``limit``, which the record
keeps): its marginal probability of being in the answer, so with at least ``limit``
candidates the values sum to about ``limit``. Thompson sampling: the share of
Monte-Carlo draws in which it is among the ``limit`` first by priority, at most one per
diversity group (:meth:`models.adaptive_moments.Moments.logged_selection`); the hold-out:
``limit / n`` for a random order, drawn the same way when a diversity rule applies; a
deterministic policy: 1 for the chosen, 0 for the rest."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from engine.domain import CustomerState
from engine.holders import Snapshot
from engine.selection import DecisionInput, Ranked

_RNG = np.random.default_rng()  # the hold-out's draws when the scorer has no generator


def decision_record(
    snap: Snapshot,
    response: dict[str, Any],
    ranked: Ranked | None,
    request: DecisionInput,
    context: Mapping[str, Any],
    state: CustomerState,
    now: float,
    selection_draws: int,
) -> dict[str, Any]:
    candidates: dict[str, Any] = {}
    learn: list[dict[str, Any]] | None = None
    customer = state.features()
    if ranked is not None and len(ranked.idx):
        ids = snap.catalogue.ids[ranked.idx].tolist()
        scorer: Any = snap.scorer
        if hasattr(scorer, "offsets") and response["actions"]:
            learn = _learn_entries(snap, response, ranked, customer, context)
        if snap.challenger is not None:
            shadow = snap.challenger.score(customer, context, ranked.idx)
            candidates["challenger"] = {
                "version": snap.challenger.version,
                "propensity": np.ascontiguousarray(shadow),
            }
        candidates |= {
            "action_ids": ids,
            "propensity": np.ascontiguousarray(ranked.propensity),
            "priority": np.ascontiguousarray(ranked.priority),
            "p_chosen": _chosen_probabilities(
                snap, scorer, response, ranked, request, ids, selection_draws
            ),
        }
    return {
        "decision_id": response["decision_id"],
        "timestamp": now,
        "customer_id": request.customer_id,
        "channel": request.channel,
        "placement": response["placement"],
        "context": context,
        "features": customer,
        "group": response["group"],
        "fallback": response["fallback"],
        "model_version": response["model_version"],
        "policy_version": response["policy_version"],
        "limit": request.limit,
        "candidates": candidates,
        "chosen": [a["action_id"] for a in response["actions"]],
        "learn": learn,
    }


def _chosen_probabilities(
    snap: Snapshot,
    scorer: Any,
    response: dict[str, Any],
    ranked: Ranked,
    request: DecisionInput,
    ids: list[str],
    draws: int,
) -> np.ndarray:
    """Each candidate's probability of being among the actions the policy that decided
    answers with (see the module's docstring)."""
    n = len(ranked.idx)
    groups = None
    if request.limit > 1 and ranked.diversity is not None:
        groups = _groups(snap, ranked)
    if response["group"] == "control":
        if groups is None or not draws:
            return np.full(n, min(1.0, request.limit / n))
        return _random_order_shares(
            getattr(scorer, "rng", None) or _RNG, draws, groups, request.limit
        )
    power = snap.catalogue.arbitration(request.channel, response["placement"]).config
    if ranked.moments is not None and draws and power.propensity_power > 0.0:
        # Thompson sampling chose: the chance each candidate is among the first `limit`
        priority = ranked.priority
        if power.propensity_power != 1.0:  # σ^a × rest ranks as σ × rest^(1/a)
            priority = priority ** (1.0 / power.propensity_power)
        shares: np.ndarray = ranked.moments.logged_selection(
            scorer.rng,
            draws,
            priority,
            ranked.propensity,
            getattr(scorer, "normals", None),
            request.limit,
            groups,
        )
        return shares
    shares = np.zeros(n)  # a deterministic policy: the chosen are certain, the rest never
    for action in response["actions"]:
        if action["action_id"] in ids:  # a placement default may not be a candidate
            shares[ids.index(action["action_id"])] = 1.0
    return shares


def _random_order_shares(
    rng: np.random.Generator, draws: int, groups: np.ndarray, limit: int
) -> np.ndarray:
    """The hold-out's shares with a diversity rule: the chance of being among the first
    ``limit`` taken when a random order is walked skipping a group already taken, that is
    the ``limit`` first of the groups' first comers, over ``draws`` random orders (at
    least ``0.5 / draws``). Groups are any codes in ``0 … n-1``."""
    groups = np.unique(groups, return_inverse=True)[1]  # coded 0 … g-1, every code used
    n, g = len(groups), int(groups.max()) + 1
    offset = 2.0 * np.arange(g)
    keys = rng.random((draws, n)) + offset[groups]  # a group's members together, by key
    order = np.argsort(keys, axis=1)
    sizes = np.bincount(groups, minlength=g)
    leaders = order[:, np.cumsum(sizes) - sizes]  # each group's first comer, per draw
    if limit < g:
        first = np.take_along_axis(keys, leaders, axis=1) - offset
        taken = np.argpartition(first, limit - 1, axis=1)[:, :limit]
        leaders = np.take_along_axis(leaders, taken, axis=1)
    shares: np.ndarray = np.maximum(np.bincount(leaders.ravel(), minlength=n) / draws, 0.5 / draws)
    return shares


def _groups(snap: Snapshot, ranked: Ranked) -> np.ndarray:
    """Each candidate's group under the diversity attribute, as the position of the first
    candidate of its group (so in ``0 … n-1``); a candidate without the attribute is a
    group of its own (the selection never skips it). The catalogue codes the values once."""
    codes = snap.catalogue.diversity_codes(str(ranked.diversity))[ranked.idx]
    first = np.empty(len(snap.catalogue.views), dtype=np.int64)
    first[codes[::-1]] = np.arange(len(codes) - 1, -1, -1)  # the last write is the first
    found: np.ndarray = first[codes]
    return found


def _learn_entries(
    snap: Snapshot,
    response: dict[str, Any],
    ranked: Ranked,
    customer: Mapping[str, Any],
    context: Mapping[str, Any],
) -> list[dict[str, Any]]:
    """The shown actions with the logit each started from, for the adaptive learner."""
    scorer: Any = snap.scorer
    shown = [snap.catalogue.by_id[a["action_id"]].index for a in response["actions"]]
    ranked_at = ranked.idx.tolist()  # a list's index(): a numpy comparison per action
    where = [ranked_at.index(i) if i in ranked_at else -1 for i in shown]  # cost 3 µs
    if ranked.offsets is not None and -1 not in where:
        offsets = ranked.offsets[where]  # worked out by the ranking
    else:  # a placement default, not ranked
        offsets = scorer.offsets(customer, context, np.asarray(shown, dtype=np.intp))
    return [
        {
            "action_id": snap.catalogue.actions[i].action.id,
            "view": snap.catalogue.views[i],
            "offset": float(o),
        }
        for i, o in zip(shown, offsets, strict=True)
    ]
