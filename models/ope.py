"""Off-policy evaluation: what a policy would have earned, estimated from a logged-decision file.

The log (contract §6) holds one shown action per line with the probability that the logging
policy chose it. Each line is one *round*; a decision that showed several actions gives several
rounds (one per position), each judged on its own, and its propensity is the action's marginal
chance of being among those shown (the decision log's ``p_chosen``), not of being shown first.
Estimators share two methods, in the style of Open Bandit Pipeline: ``estimate_policy_value``
and ``estimate_interval`` (percentile bootstrap over rounds, seeded). A policy is passed as its
action distribution, an array ``(n_rounds, n_actions)``; an entry may be NaN where the policy
does not know its probability (the logging policy knows only its propensities), and then only
the logged action's entry is used, which makes every estimator return the plain mean reward for
the logging policy.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np
import numpy.typing as npt
import orjson
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from models.layout import FeatureLayout

__all__ = [
    "DoublyRobust",
    "Estimator",
    "Interval",
    "InverseProbabilityWeighting",
    "RewardModel",
    "Rounds",
    "SelfNormalizedInverseProbabilityWeighting",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def _number(row: Mapping[str, Any], key: str) -> float:
    value = row.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{key} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{key} must be finite, got {value!r}")
    return float(value)


def _optional_text(row: Mapping[str, Any], key: str) -> str | None:
    value = row.get(key)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{key} must be a string, got {value!r}")
    return value


def _timestamp(value: Any) -> float:
    if value is None:
        return math.nan
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    raise ValueError(f"timestamp must be a number or an ISO-8601 string, got {value!r}")


class _Line(NamedTuple):
    action_id: str
    propensity: float
    reward: float
    position: int
    customer_id: str
    features: dict[str, Any]
    context: dict[str, Any]
    timestamp: float


def _parse_line(row: Any) -> _Line:
    if not isinstance(row, dict):
        raise ValueError("a line must be a JSON object")
    action_id = row.get("action_id")
    if not isinstance(action_id, str) or not action_id:
        raise ValueError(f"action_id must be a non-empty string, got {action_id!r}")
    propensity = _number(row, "propensity")
    if not 0.0 < propensity <= 1.0:
        raise ValueError(f"propensity must be in (0, 1], got {propensity!r}")
    position = row.get("position", 1)
    if isinstance(position, bool) or not isinstance(position, int) or position < 1:
        raise ValueError(f"position must be an integer >= 1, got {position!r}")
    features = row.get("features") or {}
    if not isinstance(features, dict):
        raise ValueError(f"features must be an object, got {features!r}")
    return _Line(
        action_id=action_id,
        propensity=propensity,
        reward=_number(row, "reward"),
        position=position,
        customer_id=_optional_text(row, "customer_id") or "",
        features=features,
        context={
            "channel": _optional_text(row, "channel"),
            "placement": _optional_text(row, "placement"),
        },
        timestamp=_timestamp(row.get("timestamp")),
    )


@dataclass(frozen=True, eq=False)
class Rounds:
    """The logged rounds as typed columns; actions are indices into ``action_set``.

    ``action_set`` is the sorted ids of the actions seen in the log: the actions every policy
    distributes its probability over, since no other action has evidence behind it.
    """

    action_set: tuple[str, ...]
    actions: IntArray
    rewards: FloatArray
    propensities: FloatArray
    positions: IntArray
    customer_ids: tuple[str, ...]
    features: tuple[Mapping[str, Any], ...]
    contexts: tuple[Mapping[str, Any], ...]
    timestamps: FloatArray

    @property
    def n_rounds(self) -> int:
        return len(self.rewards)

    @property
    def n_actions(self) -> int:
        return len(self.action_set)

    @classmethod
    def from_records(cls, records: Iterable[Any], source: str = "<records>") -> Rounds:
        """Validate parsed rows (dicts); a bad one raises ValueError naming ``source:number``."""
        lines: list[_Line] = []
        for number, row in enumerate(records, start=1):
            try:
                lines.append(_parse_line(row))
            except ValueError as exc:
                raise ValueError(f"{source}:{number}: {exc}") from None
        return cls._build(lines, source)

    @classmethod
    def from_file(cls, path: Path) -> Rounds:
        """Read a logged-decision file (JSON Lines); blank lines are skipped."""
        lines: list[_Line] = []
        with path.open("rb") as handle:
            for number, raw in enumerate(handle, start=1):
                if not raw.strip():
                    continue
                try:
                    lines.append(_parse_line(orjson.loads(raw)))
                except orjson.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{number}: invalid JSON: {exc}") from None
                except ValueError as exc:
                    raise ValueError(f"{path}:{number}: {exc}") from None
        return cls._build(lines, str(path))

    @classmethod
    def _build(cls, lines: Sequence[_Line], source: str) -> Rounds:
        if not lines:
            raise ValueError(f"{source}: no logged rounds")
        action_set = tuple(sorted({line.action_id for line in lines}))
        index = {action_id: i for i, action_id in enumerate(action_set)}
        return cls(
            action_set=action_set,
            actions=np.array([index[line.action_id] for line in lines], dtype=np.int64),
            rewards=np.array([line.reward for line in lines], dtype=np.float64),
            propensities=np.array([line.propensity for line in lines], dtype=np.float64),
            positions=np.array([line.position for line in lines], dtype=np.int64),
            customer_ids=tuple(line.customer_id for line in lines),
            features=tuple(line.features for line in lines),
            contexts=tuple(line.context for line in lines),
            timestamps=np.array([line.timestamp for line in lines], dtype=np.float64),
        )


class RewardModel:
    """q(x, a), the expected reward of action ``a`` in round ``x``, for the doubly robust estimator.

    Why this choice: one ridge regression per action on the encoded customer and context features
    (the same encoding the trained models infer) lets each action respond to the context in its
    own way without a hand-made interaction design, and ridge handles any numeric reward, not
    just 0/1. An action with fewer than ``min_rounds`` rounds (or a constant reward) falls back to
    its mean reward, an unseen one to the overall mean. Estimates are cross-fitted over ``folds``
    folds, so no round is predicted by a fit that saw its own reward (no over-fitting bias).
    """

    def __init__(
        self, alpha: float = 1.0, folds: int = 5, min_rounds: int = 20, random_state: int = 0
    ) -> None:
        self.alpha = alpha
        self.folds = folds
        self.min_rounds = min_rounds
        self.random_state = random_state

    def fit_predict(self, rounds: Rounds) -> FloatArray:
        """Array ``(n_rounds, n_actions)`` of estimated rewards, clipped to the observed range."""
        layout = FeatureLayout.infer(rounds.features, rounds.contexts, [])
        matrix = np.zeros((rounds.n_rounds, layout.width), dtype=np.float64)
        for i, (customer, context) in enumerate(zip(rounds.features, rounds.contexts, strict=True)):
            matrix[i] = layout.request_row(customer, context)
        n = rounds.n_rounds
        folds = self.folds if n >= 2 * self.folds else 1
        fold_of = np.random.default_rng(self.random_state).permutation(n) % folds
        estimates = np.zeros((n, rounds.n_actions), dtype=np.float64)
        for fold in range(folds):
            test = fold_of == fold
            train = ~test if folds > 1 else test
            estimates[test] = self._fit_fold(rounds, matrix, train, test)
        return np.clip(estimates, rounds.rewards.min(), rounds.rewards.max())

    def _fit_fold(
        self,
        rounds: Rounds,
        matrix: FloatArray,
        train: npt.NDArray[np.bool_],
        test: npt.NDArray[np.bool_],
    ) -> FloatArray:
        out = np.empty((int(test.sum()), rounds.n_actions), dtype=np.float64)
        overall = float(rounds.rewards[train].mean())
        for action in range(rounds.n_actions):
            rows = train & (rounds.actions == action)
            rewards = rounds.rewards[rows]
            if len(rewards) >= self.min_rounds and np.ptp(rewards) > 0 and matrix.shape[1] > 0:
                model = make_pipeline(StandardScaler(), Ridge(alpha=self.alpha))
                model.fit(matrix[rows], rewards)
                out[:, action] = model.predict(matrix[test])
            else:
                out[:, action] = float(rewards.mean()) if len(rewards) else overall
        return out


@dataclass(frozen=True, slots=True)
class Interval:
    """A point estimate on all rounds and its bootstrap interval."""

    value: float
    low: float
    high: float


class Estimator:
    """Base of the estimators: a value is ``sum(numerators) / sum(denominators)`` over rounds.

    Writing every estimator as a ratio of per-round sums lets one bootstrap serve them all.
    """

    name: ClassVar[str] = ""

    def _terms(
        self, rounds: Rounds, action_dist: FloatArray, estimated_rewards: FloatArray | None
    ) -> tuple[FloatArray, FloatArray]:
        raise NotImplementedError

    def estimate_policy_value(
        self, rounds: Rounds, action_dist: FloatArray, estimated_rewards: FloatArray | None = None
    ) -> float:
        """The estimated mean reward per round of the policy with ``action_dist``; NaN when no
        round supports the policy (SNIPS with every weight zero)."""
        numerators, denominators = self._terms(rounds, action_dist, estimated_rewards)
        return _ratio(numerators.sum(), denominators.sum())

    def estimate_interval(
        self,
        rounds: Rounds,
        action_dist: FloatArray,
        estimated_rewards: FloatArray | None = None,
        alpha: float = 0.05,
        n_bootstrap: int = 1000,
        random_state: int | None = None,
    ) -> Interval:
        """Point estimate and the ``1 - alpha`` percentile-bootstrap interval over rounds."""
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
        if n_bootstrap < 1:
            raise ValueError(f"n_bootstrap must be at least 1, got {n_bootstrap!r}")
        numerators, denominators = self._terms(rounds, action_dist, estimated_rewards)
        rng = np.random.default_rng(random_state)
        n = len(numerators)
        tops = np.empty(n_bootstrap, dtype=np.float64)
        bottoms = np.empty(n_bootstrap, dtype=np.float64)
        chunk = max(1, 2_000_000 // n)  # bounds the index matrix to ~16 MB
        for start in range(0, n_bootstrap, chunk):
            picks = rng.integers(0, n, size=(min(chunk, n_bootstrap - start), n))
            tops[start : start + len(picks)] = numerators[picks].sum(axis=1)
            bottoms[start : start + len(picks)] = denominators[picks].sum(axis=1)
        value = _ratio(numerators.sum(), denominators.sum())
        supported = bottoms != 0.0
        if not supported.any():
            return Interval(value, math.nan, math.nan)
        values = tops[supported] / bottoms[supported]
        low, high = np.quantile(values, [alpha / 2, 1 - alpha / 2])
        return Interval(value, float(low), float(high))


def _ratio(top: float, bottom: float) -> float:
    return float(top / bottom) if bottom != 0.0 else math.nan


def _known_rows(action_dist: FloatArray) -> npt.NDArray[np.bool_]:
    """Rows where the policy gives every action's probability (no NaN)."""
    return np.asarray(~np.isnan(action_dist).any(axis=1), dtype=np.bool_)


def _weights(rounds: Rounds, action_dist: FloatArray) -> FloatArray:
    """pi(a_i | x_i) / p_i, after checking the distribution fits the rounds."""
    expected = (rounds.n_rounds, rounds.n_actions)
    if action_dist.shape != expected:
        raise ValueError(f"action_dist must have shape {expected}, got {action_dist.shape}")
    chosen = action_dist[np.arange(rounds.n_rounds), rounds.actions]
    if not np.all((chosen >= 0.0) & (chosen <= 1.0)):
        raise ValueError("action_dist must give each logged action a probability in [0, 1]")
    rows = action_dist[_known_rows(action_dist)]
    if np.any(rows < 0.0) or not np.allclose(rows.sum(axis=1), 1.0, atol=1e-6):
        raise ValueError("each fully known row of action_dist must be a probability distribution")
    weights: FloatArray = chosen / rounds.propensities
    return weights


class InverseProbabilityWeighting(Estimator):
    """IPS: the mean of ``pi(a|x) / p * reward``; unbiased when the propensities are right.

    >>> rounds = Rounds.from_records(
    ...     {"action_id": a, "propensity": 0.5, "reward": r} for a, r in [("x", 1), ("y", 0)]
    ... )
    >>> always_x = np.array([[1.0, 0.0], [1.0, 0.0]])
    >>> InverseProbabilityWeighting().estimate_policy_value(rounds, always_x)
    1.0
    >>> InverseProbabilityWeighting().estimate_interval(rounds, always_x, random_state=0).high
    2.0
    """

    name = "IPS"

    def _terms(
        self, rounds: Rounds, action_dist: FloatArray, estimated_rewards: FloatArray | None
    ) -> tuple[FloatArray, FloatArray]:
        weights = _weights(rounds, action_dist)
        return weights * rounds.rewards, np.ones_like(weights)


class SelfNormalizedInverseProbabilityWeighting(Estimator):
    """SNIPS: IPS divided by the mean weight; a little biased, far less variable, and always
    within the range of the rewards.

    >>> rounds = Rounds.from_records(
    ...     {"action_id": a, "propensity": 0.5, "reward": r} for a, r in [("x", 1), ("y", 0)]
    ... )
    >>> SelfNormalizedInverseProbabilityWeighting().estimate_policy_value(
    ...     rounds, np.array([[1.0, 0.0], [1.0, 0.0]])
    ... )
    1.0
    """

    name = "SNIPS"

    def _terms(
        self, rounds: Rounds, action_dist: FloatArray, estimated_rewards: FloatArray | None
    ) -> tuple[FloatArray, FloatArray]:
        weights = _weights(rounds, action_dist)
        return weights * rounds.rewards, weights


class DoublyRobust(Estimator):
    """DR: the reward model's value of the policy, corrected by the IPS-weighted residuals.

    Unbiased if either the propensities or the reward model are right, and less variable than
    IPS when the model is good. Without ``estimated_rewards`` it fits ``reward_model`` on the
    rounds. Where a row of ``action_dist`` is not fully known the model term is itself
    importance-sampled, so that round contributes ``pi(a|x) / p * reward`` (as in IPS).

    >>> rounds = Rounds.from_records(
    ...     {"action_id": a, "propensity": 0.5, "reward": r} for a, r in [("x", 1), ("y", 0)]
    ... )
    >>> q = np.array([[1.0, 0.0], [1.0, 0.0]])
    >>> DoublyRobust().estimate_policy_value(rounds, np.array([[1.0, 0.0], [1.0, 0.0]]), q)
    1.0
    """

    name = "DR"

    def __init__(self, reward_model: RewardModel | None = None) -> None:
        self.reward_model = reward_model

    def _terms(
        self, rounds: Rounds, action_dist: FloatArray, estimated_rewards: FloatArray | None
    ) -> tuple[FloatArray, FloatArray]:
        weights = _weights(rounds, action_dist)
        if estimated_rewards is None:
            estimated_rewards = (self.reward_model or RewardModel()).fit_predict(rounds)
        if estimated_rewards.shape != action_dist.shape:
            shape = estimated_rewards.shape
            raise ValueError(f"estimated_rewards must have shape {action_dist.shape}, got {shape}")
        known = _known_rows(action_dist)
        logged = estimated_rewards[np.arange(rounds.n_rounds), rounds.actions]
        direct = (np.where(known[:, None], action_dist, 0.0) * estimated_rewards).sum(axis=1)
        corrected = np.where(
            known, direct + weights * (rounds.rewards - logged), weights * rounds.rewards
        )
        return corrected, np.ones_like(weights)
