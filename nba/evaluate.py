"""``nba evaluate``: off-policy estimates of policies on a logged-decision file (contract §6).

For each policy asked for it prints the IPS, self-normalised IPS and doubly robust estimates of
the mean reward per round, each with a 95% bootstrap interval and the number of rounds. The
reward model behind DR is fitted once per log and shared by the policies, and every interval is
seeded, so the same log gives the same report.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from models.ope import (
    DoublyRobust,
    Estimator,
    InverseProbabilityWeighting,
    RewardModel,
    Rounds,
    SelfNormalizedInverseProbabilityWeighting,
)
from models.ope_policies import Policy, parse_policy

__all__ = ["Row", "evaluate", "run_evaluate"]

ALPHA = 0.05
N_BOOTSTRAP = 1000
SEED = 20_261_124
ESTIMATORS: tuple[Estimator, ...] = (
    InverseProbabilityWeighting(),
    SelfNormalizedInverseProbabilityWeighting(),
    DoublyRobust(),
)


@dataclass(frozen=True, slots=True)
class Row:
    policy: str
    estimator: str
    value: float
    low: float
    high: float
    rounds: int


def evaluate(
    rounds: Rounds,
    policies: Sequence[Policy],
    n_bootstrap: int = N_BOOTSTRAP,
    random_state: int = SEED,
) -> list[Row]:
    """One row per policy and estimator, in the order given."""
    estimated_rewards = RewardModel(random_state=random_state).fit_predict(rounds)
    rows: list[Row] = []
    for policy in policies:
        action_dist = policy.action_probabilities(rounds)
        for estimator in ESTIMATORS:
            interval = estimator.estimate_interval(
                rounds,
                action_dist,
                estimated_rewards,
                alpha=ALPHA,
                n_bootstrap=n_bootstrap,
                random_state=random_state,
            )
            rows.append(
                Row(
                    policy.name,
                    estimator.name,
                    interval.value,
                    interval.low,
                    interval.high,
                    rounds.n_rounds,
                )
            )
    return rows


def _table(rows: Sequence[Row]) -> str:
    header = ("policy", "estimator", "value", "95% low", "95% high", "rounds")
    cells = [header] + [
        (r.policy, r.estimator, f"{r.value:.6f}", f"{r.low:.6f}", f"{r.high:.6f}", str(r.rounds))
        for r in rows
    ]
    widths = [max(len(line[i]) for line in cells) for i in range(len(header))]
    lines = []
    for line in cells:
        left = [line[i].ljust(widths[i]) for i in range(2)]
        right = [line[i].rjust(widths[i]) for i in range(2, len(header))]
        lines.append("  ".join(left + right))
    return "\n".join(lines)


def _action_views(catalogue: Path) -> dict[str, Mapping[str, Any]]:
    from engine.errors import CatalogueError
    from rules.catalogue import load_catalogue

    try:
        loaded = load_catalogue(catalogue)
    except CatalogueError as exc:
        raise ValueError(f"{catalogue}: invalid catalogue: {exc}") from None
    return {a.action.id: a.view for a in loaded.actions}


def run_evaluate(
    log: Path, policies: list[str], as_json: bool, catalogue: Path | None = None
) -> int:
    """Print the report; on a missing file, a bad line or an unknown policy print one line to
    stderr and return 2."""
    specs = policies or ["logged"]
    try:
        views = _action_views(catalogue) if catalogue is not None else None
        chosen = [parse_policy(spec, views) for spec in specs]
        rows = evaluate(Rounds.from_file(log), chosen)
    except OSError as exc:
        print(f"nba evaluate: cannot read {exc.filename or log}: {exc.strerror}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"nba evaluate: {exc}", file=sys.stderr)
        return 2
    if as_json:
        print(orjson.dumps([asdict(r) for r in rows], option=orjson.OPT_INDENT_2).decode())
    else:
        print(_table(rows))
    return 0
