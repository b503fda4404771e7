"""Policies to evaluate off-policy: each says how likely it is to pick each action in each round.

A policy is anything with a ``name`` and ``action_probabilities(rounds)`` returning an array
``(n_rounds, n_actions)`` over ``rounds.action_set`` (:class:`Policy`), so tests and callers can
bring their own. :func:`parse_policy` builds the ones ``nba evaluate --policy`` names.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from models.onnx_model import OnnxModel, load_current
from models.ope import FloatArray, Rounds
from models.registry import ModelRegistry

__all__ = ["LoggedPolicy", "ModelPolicy", "Policy", "UniformPolicy", "parse_policy"]


class Policy(Protocol):
    name: str

    def action_probabilities(self, rounds: Rounds) -> FloatArray: ...


class UniformPolicy:
    """Every action seen in the log, equally likely: the baseline any model must beat.

    >>> from models.ope import Rounds
    >>> rounds = Rounds.from_records([{"action_id": "a", "propensity": 1.0, "reward": 0.0},
    ...                               {"action_id": "b", "propensity": 1.0, "reward": 1.0}])
    >>> UniformPolicy().action_probabilities(rounds).tolist()
    [[0.5, 0.5], [0.5, 0.5]]
    """

    def __init__(self, name: str = "uniform") -> None:
        self.name = name

    def action_probabilities(self, rounds: Rounds) -> FloatArray:
        return np.full((rounds.n_rounds, rounds.n_actions), 1.0 / rounds.n_actions)


class LoggedPolicy:
    """The logging policy itself. It is known only through the logged propensities, so each row
    holds the propensity at the logged action and NaN elsewhere; the estimators then return the
    plain mean reward, which is the on-policy value and needs no correction.
    """

    def __init__(self, name: str = "logged") -> None:
        self.name = name

    def action_probabilities(self, rounds: Rounds) -> FloatArray:
        probabilities = np.full((rounds.n_rounds, rounds.n_actions), np.nan)
        probabilities[np.arange(rounds.n_rounds), rounds.actions] = rounds.propensities
        return probabilities


class ModelPolicy:
    """Greedy on the current model of a registry: in each round the action the model scores
    highest gets probability 1 (ties go to the first id in sorted order).

    Each action is scored as the model saw it in training: ``{"action_id": id}`` plus its
    catalogue attributes from ``action_views`` (the same join as :func:`models.logfile.read_log`).
    """

    def __init__(
        self,
        directory: Path,
        action_views: Mapping[str, Mapping[str, Any]] | None = None,
        name: str | None = None,
    ) -> None:
        self.directory = directory
        self.action_views = dict(action_views or {})
        self.name = name or f"model:{directory}"
        try:
            model = load_current(ModelRegistry(directory))
        except Exception as exc:  # ONNX Runtime's errors derive from Exception directly
            raise ValueError(f"{directory}: cannot load the current model: {exc}") from None
        if model is None:
            raise ValueError(f"{directory}: no registered model")
        self.model: OnnxModel = model

    def action_probabilities(self, rounds: Rounds) -> FloatArray:
        views = [
            {"action_id": action_id, **self.action_views.get(action_id, {})}
            for action_id in rounds.action_set
        ]
        bound = self.model.bind(views)
        everything = list(range(rounds.n_actions))
        probabilities = np.zeros((rounds.n_rounds, rounds.n_actions), dtype=np.float64)
        for i, (customer, context) in enumerate(zip(rounds.features, rounds.contexts, strict=True)):
            scores = bound.score(customer, context, everything)
            probabilities[i, int(np.argmax(scores))] = 1.0
        return probabilities


def parse_policy(spec: str, action_views: Mapping[str, Mapping[str, Any]] | None = None) -> Policy:
    """``uniform``, ``logged`` or ``model:DIR`` (contract §6); anything else is a ValueError."""
    if spec == "uniform":
        return UniformPolicy()
    if spec == "logged":
        return LoggedPolicy()
    if spec.startswith("model:") and spec[len("model:") :]:
        return ModelPolicy(Path(spec[len("model:") :]), action_views, name=spec)
    raise ValueError(f"unknown policy {spec!r}: expected uniform, logged or model:DIR")
