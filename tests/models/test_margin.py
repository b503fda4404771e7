"""A registered boosted-tree or logistic-regression classifier is served by its margin,
with the classifier's own probabilities; any other model, or a rewrite that disagrees,
keeps the classifier."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import models.onnx_model as onnx_model
from models.layout import FeatureLayout, FeatureSpec
from models.margin import margin_model, probe_rows
from models.onnx_model import load_model, session_options
from models.training import _to_onnx

WIDTH = 6


def _data(seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(600, WIDTH)).astype(np.float32)
    x[:, 3] = rng.integers(0, 2, size=600)  # a one-hot-like column, split at 0.5
    x[:, 5] = 1.8e9 + rng.normal(0, 3e5, 600)  # a timestamp: far from 0, spread thin
    y = (x[:, 0] + 0.8 * x[:, 3] - 0.5 * x[:, 1] + rng.normal(0, 0.7, 600) > 0.4).astype(int)
    return x, y


def _rows(n: int, seed: int = 8) -> np.ndarray:
    """Rows like the training data's."""
    rows = _data(seed)[0][:n].copy()
    return rows


def _registered(tmp_path: Path, estimator: object) -> Path:
    x, y = _data()
    estimator.fit(x, y)  # type: ignore[attr-defined]
    (tmp_path / "model.onnx").write_bytes(_to_onnx(estimator, WIDTH))  # type: ignore[arg-type]
    return tmp_path


def _layout() -> FeatureLayout:
    return FeatureLayout(
        [FeatureSpec(f"customer.f{i}", "customer", f"f{i}", "numeric") for i in range(WIDTH)]
    )


def _classifier_probabilities(folder: Path, rows: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(folder / "model.onnx"), session_options())
    (p,) = session.run(["probabilities"], {session.get_inputs()[0].name: rows})
    return np.asarray(p, dtype=np.float64)[:, 1]


def test_boosted_trees_are_served_by_their_margin_with_the_classifiers_probabilities(
    tmp_path: Path,
) -> None:
    folder = _registered(
        tmp_path, GradientBoostingClassifier(n_estimators=40, max_depth=3, random_state=1)
    )
    model = load_model(folder, "v1", _layout())
    assert model.margin is not None
    rows = _rows(300)
    expected = _classifier_probabilities(folder, rows)
    assert np.max(np.abs(model.predict(rows) - expected)) < 1e-5
    logits = model.logits(rows)
    assert np.max(np.abs(logits - np.log(expected / (1 - expected)))) < 1e-3


def test_logistic_regression_is_served_by_its_margin_with_the_scaler_folded_in(
    tmp_path: Path,
) -> None:
    folder = _registered(tmp_path, make_pipeline(StandardScaler(), LogisticRegression()))
    graph = onnx.load(str(folder / "model.onnx"))
    assert [n.op_type for n in graph.graph.node] == ["Scaler", "LinearClassifier"]
    model = load_model(folder, "v1", _layout())
    assert model.margin is not None
    assert [n.op_type for n in margin_model(graph).graph.node] == ["LinearRegressor"]  # type: ignore[union-attr]
    rows = _rows(300)
    expected = _classifier_probabilities(folder, rows)
    assert np.max(np.abs(model.predict(rows) - expected)) < 1e-5
    assert np.max(np.abs(model.logits(rows) - np.log(expected / (1 - expected)))) < 1e-3


def test_other_models_keep_their_classifier(tmp_path: Path) -> None:
    folder = _registered(tmp_path, RandomForestClassifier(n_estimators=10, random_state=1))
    assert margin_model(onnx.load(str(folder / "model.onnx"))) is None
    model = load_model(folder, "v1", _layout())
    assert model.margin is None
    rows = _rows(50)
    expected = np.clip(_classifier_probabilities(folder, rows), 1e-9, 1 - 1e-9)
    assert np.max(np.abs(model.predict(rows) - expected)) < 1e-6
    assert np.allclose(model.logits(rows), np.log(expected / (1 - expected)), atol=1e-5)


def test_a_margin_that_disagrees_is_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    folder = _registered(
        tmp_path, GradientBoostingClassifier(n_estimators=20, max_depth=2, random_state=1)
    )

    def shifted(graph: onnx.ModelProto) -> onnx.ModelProto | None:
        found = margin_model(graph)
        assert found is not None
        tree = found.graph.node[0]
        for attribute in tree.attribute:
            if attribute.name == "base_values":
                attribute.CopyFrom(
                    helper.make_attribute("base_values", [attribute.floats[0] + 0.01])
                )
        return found

    monkeypatch.setattr(onnx_model, "margin_model", shifted)
    with caplog.at_level(logging.WARNING, logger="nba.models"):
        model = load_model(folder, "v1", _layout())
    assert model.margin is None
    assert "disagrees" in caplog.text
    rows = _rows(50)
    assert np.max(np.abs(model.predict(rows) - _classifier_probabilities(folder, rows))) < 1e-6


def test_probe_rows_take_both_branches_of_every_split(tmp_path: Path) -> None:
    folder = _registered(
        tmp_path, GradientBoostingClassifier(n_estimators=30, max_depth=3, random_state=1)
    )
    graph = onnx.load(str(folder / "model.onnx"))
    tree = graph.graph.node[0]
    found = {a.name: helper.get_attribute_value(a) for a in tree.attribute}
    probe = probe_rows(graph, WIDTH)
    for feature, value, mode in zip(
        found["nodes_featureids"], found["nodes_values"], found["nodes_modes"], strict=True
    ):
        if mode == b"LEAF":
            continue
        column = probe[:, feature]
        assert (column <= value).any() and (column > value).any()
