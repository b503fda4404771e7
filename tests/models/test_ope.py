"""Off-policy evaluation: estimators against a world whose truth is known, and bad inputs
(the command: test_ope_command.py)."""

from __future__ import annotations

import doctest
import math
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

import models.ope
import models.ope_policies
from models.ope import (
    DoublyRobust,
    Estimator,
    InverseProbabilityWeighting,
    RewardModel,
    Rounds,
    SelfNormalizedInverseProbabilityWeighting,
)
from models.ope_policies import LoggedPolicy, UniformPolicy, parse_policy
from models.registry import ModelRegistry

ESTIMATORS: list[Estimator] = [
    InverseProbabilityWeighting(),
    SelfNormalizedInverseProbabilityWeighting(),
    DoublyRobust(),
]
DEMO_CATALOGUE = Path(__file__).resolve().parents[2] / "nba" / "demo" / "catalogue"

# --- a contextual world with known reward probabilities ---------------------------------------

SEGMENTS = ["young", "mid", "senior"]
SEGMENT_P = [0.3, 0.5, 0.2]
DEVICES = ["mobile", "desktop"]
DEVICE_P = [0.6, 0.4]
ACTIONS = ["a0", "a1", "a2", "a3"]
BASE = np.array(
    [[0.10, 0.20, 0.15, 0.45], [0.40, 0.10, 0.20, 0.15], [0.20, 0.30, 0.35, 0.10]]
)  # P(reward = 1 | segment, action) on mobile
LOGGING = np.array(
    [[0.40, 0.30, 0.20, 0.10], [0.10, 0.40, 0.30, 0.20], [0.25, 0.25, 0.25, 0.25]]
)  # the logging policy, per segment
TARGET = np.array(
    [[0.05, 0.05, 0.05, 0.85], [0.85, 0.05, 0.05, 0.05], [0.05, 0.05, 0.85, 0.05]]
)  # the policy to evaluate: mostly each segment's best action, rarely logged for "young"


def mean_reward(segment: int, device: int) -> np.ndarray:
    """Desktop lifts a2 by 0.1: an effect the reward model has to pick up from the features."""
    mu: np.ndarray = BASE[segment].copy()
    mu[2] += 0.1 * device
    return mu


def true_value(policy: np.ndarray) -> float:
    return sum(
        SEGMENT_P[s] * DEVICE_P[d] * float(policy[s] @ mean_reward(s, d))
        for s in range(len(SEGMENTS))
        for d in range(len(DEVICES))
    )


class TablePolicy:
    """A known stochastic policy that depends on the customer's segment."""

    def __init__(self, table: np.ndarray, name: str = "table") -> None:
        self.table = table
        self.name = name

    def action_probabilities(self, rounds: Rounds) -> np.ndarray:
        assert rounds.action_set == tuple(ACTIONS)
        segments = [SEGMENTS.index(f["segment"]) for f in rounds.features]
        return self.table[segments]


def simulate(seed: int, n: int) -> list[dict[str, Any]]:
    """Rows of a logged-decision file, logged by LOGGING with its exact propensities."""
    rng = np.random.default_rng(seed)
    segments = rng.choice(len(SEGMENTS), size=n, p=SEGMENT_P)
    devices = rng.choice(len(DEVICES), size=n, p=DEVICE_P)
    rows = []
    for i in range(n):
        s, d = int(segments[i]), int(devices[i])
        a = int(rng.choice(len(ACTIONS), p=LOGGING[s]))
        reward = float(rng.random() < mean_reward(s, d)[a])
        rows.append(
            {
                "timestamp": 1_700_000_000 + i,
                "customer_id": f"c-{i}",
                "channel": "web",
                "placement": "home_hero",
                "features": {"segment": SEGMENTS[s], "device": DEVICES[d]},
                "action_id": ACTIONS[a],
                "position": 1,
                "propensity": float(LOGGING[s, a]),
                "reward": reward,
            }
        )
    return rows


def write_log(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in rows))
    return path


# --- coverage over seeds ----------------------------------------------------------------------

SEEDS = range(50)
ROUNDS_PER_SEED = 2000


@pytest.fixture(scope="module")
def coverage() -> dict[str, list[bool]]:
    """For each seed, whether each estimator's 95% interval covers the target's true value;
    plus the same for the logged mean reward (a control the check must reject)."""
    truth = true_value(TARGET)
    target = TablePolicy(TARGET)
    hits: dict[str, list[bool]] = {
        name: [] for name in [*(e.name for e in ESTIMATORS), "logged mean"]
    }
    for seed in SEEDS:
        rounds = Rounds.from_records(simulate(seed, ROUNDS_PER_SEED))
        q = RewardModel(random_state=seed).fit_predict(rounds)
        dist = target.action_probabilities(rounds)
        for estimator in ESTIMATORS:
            interval = estimator.estimate_interval(
                rounds, dist, q, n_bootstrap=500, random_state=seed
            )
            hits[estimator.name].append(interval.low <= truth <= interval.high)
        logged = InverseProbabilityWeighting().estimate_interval(
            rounds, LoggedPolicy().action_probabilities(rounds), n_bootstrap=500, random_state=seed
        )
        hits["logged mean"].append(logged.low <= truth <= logged.high)
    return hits


@pytest.mark.slow
@pytest.mark.parametrize("name", [e.name for e in ESTIMATORS])
def test_interval_covers_true_value_in_90_percent_of_seeds(
    coverage: dict[str, list[bool]], name: str
) -> None:
    rate = sum(coverage[name]) / len(coverage[name])
    print(f"{name} coverage {rate:.2f}, logged mean {np.mean(coverage['logged mean']):.2f}")
    assert rate >= 0.90


@pytest.mark.slow
def test_coverage_check_rejects_an_estimate_of_another_policy(
    coverage: dict[str, list[bool]],
) -> None:
    """The logging policy's value is not the target's: its intervals must rarely cover it."""
    assert abs(true_value(TARGET) - true_value(LOGGING)) > 0.1
    assert sum(coverage["logged mean"]) / len(coverage["logged mean"]) < 0.2


def test_estimates_are_close_to_the_truth_on_a_large_log() -> None:
    rounds = Rounds.from_records(simulate(123, 20_000))
    dist = TablePolicy(TARGET).action_probabilities(rounds)
    for estimator in ESTIMATORS:
        assert estimator.estimate_policy_value(rounds, dist) == pytest.approx(
            true_value(TARGET), abs=0.02
        )


def test_reward_model_learns_the_context() -> None:
    rounds = Rounds.from_records(simulate(7, 5000))
    q = RewardModel().fit_predict(rounds)
    truth = np.stack(
        [
            mean_reward(SEGMENTS.index(f["segment"]), DEVICES.index(f["device"]))
            for f in rounds.features
        ]
    )
    per_action_mean = np.array(
        [rounds.rewards[rounds.actions == a].mean() for a in range(rounds.n_actions)]
    )
    assert np.abs(q - truth).mean() < 0.5 * np.abs(per_action_mean - truth).mean()


# --- exact identities -------------------------------------------------------------------------


def test_uniform_policy_ips_on_a_uniformly_logged_file_is_the_mean_reward(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    ids = ["x", "y", "z"]
    rows = [
        {
            "timestamp": "2026-11-24T10:00:00Z",
            "customer_id": f"c{i}",
            "channel": "web",
            "placement": "home_hero",
            "features": {"views_1h": int(rng.integers(5))},
            "action_id": ids[int(rng.integers(3))],
            "position": 1,
            "propensity": 1 / 3,
            "reward": float(rng.random() < 0.3),
        }
        for i in range(997)
    ]
    rounds = Rounds.from_file(write_log(tmp_path / "log.jsonl", rows))
    dist = UniformPolicy().action_probabilities(rounds)
    assert InverseProbabilityWeighting().estimate_policy_value(rounds, dist) == np.mean(
        rounds.rewards
    )


def test_logged_policy_value_is_exactly_the_mean_reward_for_every_estimator() -> None:
    rows = simulate(11, 1500)
    rng = np.random.default_rng(11)
    for row in rows:  # real-valued rewards, to catch any rounding in the algebra
        row["reward"] = row["reward"] * float(rng.gamma(2.0, 17.3))
    rounds = Rounds.from_records(rows)
    dist = LoggedPolicy().action_probabilities(rounds)
    mean = np.mean(rounds.rewards)
    for estimator in ESTIMATORS:
        assert estimator.estimate_policy_value(rounds, dist) == mean, estimator.name
        interval = estimator.estimate_interval(rounds, dist, n_bootstrap=200, random_state=1)
        assert interval.value == mean, estimator.name
        assert interval.low < mean < interval.high


def test_dr_with_the_true_reward_model_beats_ips_on_variance() -> None:
    truth = true_value(TARGET)
    errors: dict[str, list[float]] = {"IPS": [], "DR": []}
    for seed in range(20):
        rounds = Rounds.from_records(simulate(1000 + seed, 500))
        q = np.stack(
            [
                mean_reward(SEGMENTS.index(f["segment"]), DEVICES.index(f["device"]))
                for f in rounds.features
            ]
        )
        dist = TablePolicy(TARGET).action_probabilities(rounds)
        for estimator in (InverseProbabilityWeighting(), DoublyRobust()):
            errors[estimator.name].append(estimator.estimate_policy_value(rounds, dist, q) - truth)
    assert np.mean(np.square(errors["DR"])) < 0.5 * np.mean(np.square(errors["IPS"]))


def test_estimators_by_hand() -> None:
    rounds = Rounds.from_records(
        [
            {"action_id": "x", "propensity": 0.5, "reward": 1.0},
            {"action_id": "y", "propensity": 0.25, "reward": 0.0},
            {"action_id": "x", "propensity": 0.8, "reward": 1.0},
        ]
    )
    dist = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])  # weights 2, 2, 0
    q = np.array([[0.5, 0.2], [0.4, 0.1], [0.9, 0.3]])
    ips = InverseProbabilityWeighting().estimate_policy_value(rounds, dist)
    snips = SelfNormalizedInverseProbabilityWeighting().estimate_policy_value(rounds, dist)
    dr = DoublyRobust().estimate_policy_value(rounds, dist, q)
    assert ips == pytest.approx(2 / 3)
    assert snips == pytest.approx(0.5)
    assert dr == pytest.approx((0.5 + 1.0 + 0.25 - 0.2 + 0.3) / 3)


def test_snips_without_support_is_nan_not_a_crash() -> None:
    """A policy that never takes a logged action has no evidence: SNIPS says so with NaN."""
    rounds = Rounds.from_records(
        [{"action_id": a, "propensity": 0.5, "reward": 1.0} for a in ("x", "x", "y")]
    )
    elsewhere = np.array([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    snips = SelfNormalizedInverseProbabilityWeighting()
    assert math.isnan(snips.estimate_policy_value(rounds, elsewhere))
    interval = snips.estimate_interval(rounds, elsewhere, n_bootstrap=50, random_state=0)
    assert math.isnan(interval.value) and math.isnan(interval.low) and math.isnan(interval.high)
    assert InverseProbabilityWeighting().estimate_policy_value(rounds, elsewhere) == 0.0


def test_intervals_are_seeded() -> None:
    rounds = Rounds.from_records(simulate(5, 300))
    dist = UniformPolicy().action_probabilities(rounds)
    ips = InverseProbabilityWeighting()
    first = ips.estimate_interval(rounds, dist, random_state=42)
    assert ips.estimate_interval(rounds, dist, random_state=42) == first
    assert ips.estimate_interval(rounds, dist, random_state=43) != first


def test_rounds_columns() -> None:
    rounds = Rounds.from_records(
        [
            {"action_id": "b", "propensity": 0.5, "reward": 1, "channel": "web", "position": 2},
            {"action_id": "a", "propensity": 0.25, "reward": 0.0, "features": {"k": 1}},
        ]
    )
    assert rounds.action_set == ("a", "b")
    assert rounds.actions.tolist() == [1, 0]
    assert rounds.rewards.tolist() == [1.0, 0.0]
    assert rounds.positions.tolist() == [2, 1]
    assert rounds.contexts[0] == {"channel": "web", "placement": None}
    assert rounds.features[1] == {"k": 1}
    assert math.isnan(rounds.timestamps[0])


def test_policies_shapes() -> None:
    rounds = Rounds.from_records(simulate(2, 50))
    uniform = UniformPolicy().action_probabilities(rounds)
    assert uniform.shape == (50, 4) and np.allclose(uniform.sum(axis=1), 1.0)
    logged = LoggedPolicy().action_probabilities(rounds)
    assert np.array_equal(logged[np.arange(50), rounds.actions], rounds.propensities)
    assert np.isnan(logged).sum() == 50 * 3


def test_docstring_examples_run() -> None:
    for module in (models.ope, models.ope_policies):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__


# --- bad inputs -------------------------------------------------------------------------------

GOOD = {"action_id": "a1", "propensity": 0.5, "reward": 0.0}
BAD_LINES = [
    ("not json", b"{nope", "invalid JSON"),
    ("not an object", b"[1, 2]", "must be a JSON object"),
    ("missing propensity", {"action_id": "a1", "reward": 0}, "propensity must be a number"),
    ("zero propensity", {**GOOD, "propensity": 0}, "propensity must be in (0, 1]"),
    ("negative propensity", {**GOOD, "propensity": -0.1}, "propensity must be in (0, 1]"),
    ("propensity above one", {**GOOD, "propensity": 1.5}, "propensity must be in (0, 1]"),
    ("propensity as text", {**GOOD, "propensity": "0.5"}, "propensity must be a number"),
    ("propensity as bool", {**GOOD, "propensity": True}, "propensity must be a number"),
    ("missing reward", {"action_id": "a1", "propensity": 0.5}, "reward must be a number"),
    ("null reward", {**GOOD, "reward": None}, "reward must be a number"),
    ("reward as text", {**GOOD, "reward": "yes"}, "reward must be a number"),
    ("infinite reward", b'{"action_id": "a1", "propensity": 0.5, "reward": 1e999}', "invalid JSON"),
    ("missing action", {"propensity": 0.5, "reward": 0}, "action_id must be a non-empty string"),
    ("empty action", {**GOOD, "action_id": ""}, "action_id must be a non-empty string"),
    ("numeric action", {**GOOD, "action_id": 7}, "action_id must be a non-empty string"),
    ("features a list", {**GOOD, "features": [1]}, "features must be an object"),
    ("channel a number", {**GOOD, "channel": 3}, "channel must be a string"),
    ("bad timestamp", {**GOOD, "timestamp": "yesterday"}, "timestamp must be"),
    ("position zero", {**GOOD, "position": 0}, "position must be an integer >= 1"),
    ("position as text", {**GOOD, "position": "1"}, "position must be an integer >= 1"),
]


@pytest.mark.parametrize(
    ("line", "message"), [c[1:] for c in BAD_LINES], ids=[c[0] for c in BAD_LINES]
)
def test_bad_line_raises_naming_file_and_line(
    tmp_path: Path, line: bytes | dict[str, Any], message: str
) -> None:
    raw = line if isinstance(line, bytes) else orjson.dumps(line)
    path = tmp_path / "log.jsonl"
    path.write_bytes(orjson.dumps(GOOD) + b"\n\n" + raw + b"\n")
    with pytest.raises(ValueError, match=r"^" + str(path).replace("\\", "\\\\") + ":3: ") as info:
        Rounds.from_file(path)
    assert message in str(info.value)


@pytest.mark.parametrize("field", ["reward", "propensity"])
def test_records_with_non_finite_numbers_are_refused(field: str) -> None:
    rows = [GOOD, {**GOOD, field: math.inf}, GOOD]
    with pytest.raises(ValueError, match=f"^<records>:2: {field} must be finite"):
        Rounds.from_records(rows)


def test_empty_log_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text("\n\n")
    with pytest.raises(ValueError, match="no logged rounds"):
        Rounds.from_file(path)


def _bad_dist(rounds: Rounds, change: str) -> np.ndarray:
    dist = UniformPolicy().action_probabilities(rounds)
    if change == "shape":
        return dist[:, :-1]
    if change == "sum":
        return dist * 0.9
    if change == "negative":
        dist[0] = [1.5, -0.5, 0.0, 0.0]
        return dist
    dist[0, rounds.actions[0]] = np.nan  # "nan at logged action"
    return dist


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("shape", "action_dist must have shape"),
        ("sum", "must be a probability distribution"),
        ("negative", "probability"),
        ("nan at logged action", "probability in \\[0, 1\\]"),
    ],
)
@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda e: e.name)
def test_bad_action_distribution_is_refused(
    estimator: Estimator, change: str, message: str
) -> None:
    rounds = Rounds.from_records(simulate(1, 40))
    with pytest.raises(ValueError, match=message):
        estimator.estimate_policy_value(rounds, _bad_dist(rounds, change))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"alpha": 0.0}, "alpha must be in"),
        ({"alpha": 1.0}, "alpha must be in"),
        ({"n_bootstrap": 0}, "n_bootstrap must be at least 1"),
        ({"estimated_rewards": np.zeros((40, 3))}, "estimated_rewards must have shape"),
    ],
)
def test_bad_interval_arguments_are_refused(kwargs: dict[str, Any], message: str) -> None:
    rounds = Rounds.from_records(simulate(1, 40))
    dist = UniformPolicy().action_probabilities(rounds)
    with pytest.raises(ValueError, match=message):
        DoublyRobust().estimate_interval(rounds, dist, **kwargs)


@pytest.mark.parametrize("spec", ["greedy", "Uniform", "model:", "model", ""])
def test_unknown_policy_is_refused(spec: str) -> None:
    with pytest.raises(ValueError, match="unknown policy"):
        parse_policy(spec)


def test_model_policy_without_a_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no registered model"):
        parse_policy(f"model:{tmp_path}")


def test_model_policy_with_a_corrupt_model_is_refused(tmp_path: Path) -> None:
    ModelRegistry(tmp_path).register(b"not onnx", {"features": []})
    with pytest.raises(ValueError, match="cannot load the current model"):
        parse_policy(f"model:{tmp_path}")
