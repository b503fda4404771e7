"""``nba evaluate`` end to end: a trained model as the target policy, JSON and text
output, the logged policy by default, and one-line errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from models.logfile import read_log
from models.ope import Rounds
from models.ope_policies import ModelPolicy
from models.registry import ModelRegistry
from models.training import train_model
from nba.evaluate import run_evaluate
from rules.catalogue import load_catalogue
from tests.models.test_ope import DEMO_CATALOGUE, GOOD, write_log

INTERESTS = ["shoes", "electronics", "home", "sports"]
DEMO_ACTIONS = ["summer-shoes-10", "new-laptops", "bedding-sale", "marathon-gear"]  # same order


def shop_log(seed: int, n: int) -> list[dict[str, Any]]:
    """Customers mostly take the action of their interest (the catalogue's category)."""
    rng = np.random.default_rng(seed)
    logging = np.array([0.4, 0.3, 0.2, 0.1])
    rows = []
    for i in range(n):
        interest = int(rng.integers(4))
        a = int(rng.choice(4, p=logging))
        p = 0.6 if a == interest else 0.05 + 0.05 * (a == 0)
        rows.append(
            {
                "timestamp": f"2026-11-{1 + i % 28:02d}T10:00:00Z",
                "customer_id": f"c-{i}",
                "channel": "web",
                "placement": "home_hero",
                "features": {"interest": INTERESTS[interest], "views_1h": int(rng.integers(6))},
                "action_id": DEMO_ACTIONS[a],
                "position": 1,
                "propensity": float(logging[a]),
                "reward": float(rng.random() < p),
            }
        )
    return rows


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """A log and a registry holding a model trained on it as ``nba train`` does (with views)."""
    folder = tmp_path_factory.mktemp("ope")
    log = write_log(folder / "log.jsonl", shop_log(0, 1200))
    views = {a.action.id: a.view for a in load_catalogue(DEMO_CATALOGUE).actions}
    train_model(read_log(log, views), ModelRegistry(folder / "models"), source=str(log))
    yield log, folder / "models"


def test_run_evaluate_json_end_to_end(
    trained: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    log, registry = trained
    code = run_evaluate(log, ["uniform", "logged", f"model:{registry}"], as_json=True)
    out = capsys.readouterr()
    assert code == 0 and out.err == ""
    rows = orjson.loads(out.out)
    assert [(r["policy"], r["estimator"]) for r in rows] == [
        (p, e) for p in ["uniform", "logged", f"model:{registry}"] for e in ["IPS", "SNIPS", "DR"]
    ]
    assert {r["rounds"] for r in rows} == {1200}
    assert set(rows[0]) == {"policy", "estimator", "value", "low", "high", "rounds"}
    for r in rows:
        assert r["low"] <= r["value"] <= r["high"]
    mean = float(np.mean(Rounds.from_file(log).rewards))
    assert all(r["value"] == mean for r in rows if r["policy"] == "logged")
    value = {(r["policy"], r["estimator"]): r["value"] for r in rows}
    assert value[(f"model:{registry}", "DR")] > value[("uniform", "DR")]


def test_the_catalogue_lets_the_model_see_action_attributes(
    trained: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """Trained with the catalogue's categories, the model can match them to interests only
    when evaluated with the catalogue: then it picks each customer's interest, worth ~0.6."""
    log, registry = trained
    assert run_evaluate(log, [f"model:{registry}"], True, catalogue=DEMO_CATALOGUE) == 0
    rows = {r["estimator"]: r for r in orjson.loads(capsys.readouterr().out)}
    assert rows["DR"]["low"] > 0.45
    rounds = Rounds.from_file(log)
    views = {a.action.id: a.view for a in load_catalogue(DEMO_CATALOGUE).actions}
    picks = ModelPolicy(registry, views).action_probabilities(rounds).argmax(axis=1)
    interests = [INTERESTS.index(f["interest"]) for f in rounds.features]
    chosen = [DEMO_ACTIONS.index(rounds.action_set[p]) for p in picks]
    assert np.mean(np.equal(chosen, interests)) > 0.9


def test_run_evaluate_text_table(
    trained: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    log, _ = trained
    assert run_evaluate(log, ["uniform", "logged"], as_json=False) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "policy",
        "estimator",
        "value",
        "95%",
        "low",
        "95%",
        "high",
        "rounds",
    ]
    assert len(lines) == 1 + 2 * 3
    assert len({len(line) for line in lines}) == 1  # aligned columns
    assert [line.split()[:2] for line in lines[1:4]] == [
        ["uniform", e] for e in ["IPS", "SNIPS", "DR"]
    ]
    assert all(line.split()[-1] == "1200" for line in lines[1:])


def test_run_evaluate_defaults_to_the_logged_policy(
    trained: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    log, _ = trained
    assert run_evaluate(log, [], as_json=True) == 0
    assert {r["policy"] for r in orjson.loads(capsys.readouterr().out)} == {"logged"}


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing file", "cannot read"),
        ("bad line", "log.jsonl:2: propensity must be in (0, 1]"),
        ("unknown policy", "unknown policy 'best'"),
        ("empty registry", "no registered model"),
        ("bad catalogue", "invalid catalogue"),
    ],
)
def test_run_evaluate_errors_print_one_line_and_return_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, message: str
) -> None:
    log = write_log(tmp_path / "log.jsonl", shop_log(1, 20))
    policies, catalogue = ["uniform"], None
    if case == "missing file":
        log = tmp_path / "nope.jsonl"
    elif case == "bad line":
        log.write_bytes(
            orjson.dumps(GOOD) + b"\n" + orjson.dumps({**GOOD, "propensity": 0}) + b"\n"
        )
    elif case == "unknown policy":
        policies = ["uniform", "best"]
    elif case == "empty registry":
        policies = [f"model:{tmp_path / 'models'}"]
    else:
        catalogue = tmp_path / "catalogue"
        catalogue.mkdir()
        (catalogue / "bad.yaml").write_text("id: NOT VALID\nkind: offer\n")
    assert run_evaluate(log, policies, as_json=True, catalogue=catalogue) == 2
    out = capsys.readouterr()
    assert out.out == ""
    assert len(out.err.strip().splitlines()) == 1
    assert message in out.err
