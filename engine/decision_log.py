"""The decision log record: what was decided, from what, and how likely each candidate
was to be chosen, so that decisions can be replayed, trained on and evaluated offline
(off-policy evaluation needs the probabilities; the adaptive learner the offsets)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from engine.domain import CustomerState
from engine.holders import Snapshot
from engine.selection import DecisionInput, Ranked


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
                scorer, response, ranked, request, ids, selection_draws
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
        "candidates": candidates,
        "chosen": [a["action_id"] for a in response["actions"]],
        "learn": learn,
    }


def _chosen_probabilities(
    scorer: Any,
    response: dict[str, Any],
    ranked: Ranked,
    request: DecisionInput,
    ids: list[str],
    draws: int,
) -> np.ndarray:
    """Each candidate's probability of being chosen by the policy that decided."""
    n = len(ranked.idx)
    if response["group"] == "control":
        return np.full(n, min(1.0, request.limit / n))
    if ranked.moments is not None and draws:
        # Thompson sampling chose: the chance each candidate ranks first
        shares: np.ndarray = ranked.moments.logged_selection(
            scorer.rng,
            draws,
            ranked.priority,
            ranked.propensity,
            getattr(scorer, "normals", None),
        )
        return shares
    shares = np.zeros(n)  # a deterministic policy: the chosen are certain, the rest never
    for action in response["actions"]:
        if action["action_id"] in ids:  # a placement default may not be a candidate
            shares[ids.index(action["action_id"])] = 1.0
    return shares


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
