"""Layout, training, ONNX export with its parity check, registry and serving."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.config import DEMO_CATALOGUE
from models.layout import FeatureLayout
from models.onnx_model import load_current
from models.registry import ModelRegistry
from models.training import TrainingSet, encode_all, train_model
from nba.demo.seed import logged_history
from nba.demo.world import DemoWorld
from rules.catalogue import load_catalogue


def test_layout_makes_every_scalar_a_predictor_and_finds_crosses() -> None:
    customers = [
        {"age": 30 + i % 5, "seg": "ab"[i % 2], "views_shoes": i % 3, "views_bags": 1}
        for i in range(40)
    ]
    contexts = [{"page_category": ["shoes", "bags"][i % 2]} for i in range(40)]
    actions = [{"category": ["shoes", "bags"][i % 2], "value": 10.0} for i in range(40)]
    layout = FeatureLayout.infer(customers, contexts, actions)
    names = {spec.name for spec in layout.specs}
    assert {"customer.age", "customer.seg=a", "customer.seg=b", "action.value"} <= names
    assert "context.page_category==action.category" in names
    assert "customer.views_<action.category>" in names
    row = layout.encode(
        {"views_shoes": 2.0},
        {"page_category": "shoes"},
        [{"category": "shoes"}, {"category": "bags"}],
        np.stack(
            [layout.action_row({"category": "shoes"}), layout.action_row({"category": "bags"})]
        ),
    )
    match = [s.name for s in layout.specs].index("context.page_category==action.category")
    lookup = [s.name for s in layout.specs].index("customer.views_<action.category>")
    assert list(row[:, match]) == [1.0, 0.0]
    assert list(row[:, lookup]) == [2.0, 0.0]
    assert FeatureLayout.from_json(layout.to_json()).specs == layout.specs


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> tuple[ModelRegistry, TrainingSet, str]:
    world = DemoWorld(customers=400, seed=11)
    for customer in world.customers:
        list(world.clickstream_events(customer, 0.0, 6))
    data = logged_history(world, load_catalogue(DEMO_CATALOGUE), rows=6000)
    registry = ModelRegistry(tmp_path_factory.mktemp("models"))
    version, _ = train_model(data, registry, source="test")
    return registry, data, version


def test_training_registers_a_promoted_model_with_metadata(registry) -> None:
    models, _, version = registry
    assert models.current() == version and models.versions() == [version]
    meta = models.metadata(version)
    assert meta["parity_max_abs_diff"] <= 1e-5
    assert meta["estimator"] in ("logistic", "gbm")
    assert meta["metrics"][meta["estimator"]]["auc"] > 0.6  # the world has learnable signal
    assert meta["features"] and meta["rows"] == 6000


def test_the_served_model_scores_like_training(registry) -> None:
    models, data, _ = registry
    model = load_current(models)
    assert model is not None
    views = data.actions[:5]
    bound = model.bind(views)
    scores = bound.score(data.customers[0], data.contexts[0], [0, 1, 2, 3, 4])
    layout = model.layout
    expected = [model.predict(encode_all(layout, _one(data, 0, v)))[0] for v in views]
    assert np.allclose(scores, expected, atol=1e-6)
    assert np.all((scores > 0) & (scores < 1))


def test_a_batch_is_scored_in_one_call_as_each_decision_alone(registry) -> None:
    models, data, _ = registry
    model = load_current(models)
    assert model is not None
    bound = model.bind(data.actions[:8])
    asks = [
        (data.customers[i], data.contexts[i], np.array(rows, dtype=np.intp))
        for i, rows in enumerate([[0, 1, 2], [7], [3, 4, 5, 6, 0], [2, 2]])
    ]
    calls = []
    predict = model.predict
    model.predict = lambda matrix: calls.append(len(matrix)) or predict(matrix)  # type: ignore[method-assign]
    together = bound.score_many(asks)
    assert calls == [11]  # one model call for the four decisions' 11 candidates
    for (customer, context, rows), scores in zip(asks, together, strict=True):
        assert np.allclose(scores, bound.score(customer, context, rows), atol=1e-7)


def _one(data: TrainingSet, i: int, action) -> TrainingSet:
    one = TrainingSet()
    one.add(data.customers[i], data.contexts[i], action, 0, 0.0)
    return one


def test_promotion_moves_the_pointer_and_refuses_unknown_versions(tmp_path: Path) -> None:
    models = ModelRegistry(tmp_path)
    assert models.current() is None
    first = models.register(b"onnx", {"features": []}, promote=True)
    second = models.register(b"onnx2", {"features": []}, promote=False)
    assert models.current() == first
    models.promote(second)
    assert models.current() == second
    with pytest.raises(FileNotFoundError):
        models.promote("m-missing")


def test_training_refuses_too_little_data(tmp_path: Path) -> None:
    data = TrainingSet()
    for i in range(10):
        data.add({"a": i}, {}, {"b": 1}, i % 2, float(i))
    with pytest.raises(ValueError, match="at least 50"):
        train_model(data, ModelRegistry(tmp_path))


def test_rollback_returns_to_the_previous_model_and_challengers_are_separate(
    tmp_path: Path,
) -> None:
    models = ModelRegistry(tmp_path)
    first = models.register(b"a", {"features": []})
    second = models.register(b"b", {"features": []})
    third = models.register(b"c", {"features": []}, promote=False)
    assert models.current() == second
    models.set_challenger(third)
    assert models.challenger() == third and models.current() == second
    assert models.rollback() == first and models.current() == first
    models.promote(third)
    assert models.challenger() is None  # promoted: no longer in shadow
    models.set_challenger(None)
    with pytest.raises(LookupError):
        ModelRegistry(tmp_path / "empty").rollback()
