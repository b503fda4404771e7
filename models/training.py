"""Train a propensity model with scikit-learn, export it to ONNX, register it.

The estimator is chosen by measured log loss on a time-ordered hold-out (the newest
fifth of the rows), and the export is refused unless ONNX Runtime reproduces
scikit-learn's probabilities on that hold-out within 1e-5.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnxruntime as ort
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.base import ClassifierMixin
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from models.layout import FeatureLayout
from models.onnx_model import session_options
from models.registry import ModelRegistry

PARITY_TOLERANCE = 1e-5


class ExportParityError(RuntimeError):
    """ONNX Runtime disagrees with scikit-learn: the model is not registered."""


@dataclass
class TrainingSet:
    """Shown actions with what was known when each was shown, and whether it paid off."""

    customers: list[Mapping[str, Any]] = field(default_factory=list)
    contexts: list[Mapping[str, Any]] = field(default_factory=list)
    actions: list[Mapping[str, Any]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    timestamps: list[float] = field(default_factory=list)

    def add(
        self,
        customer: Mapping[str, Any],
        context: Mapping[str, Any],
        action: Mapping[str, Any],
        label: int,
        timestamp: float,
    ) -> None:
        self.customers.append(customer)
        self.contexts.append(context)
        self.actions.append(action)
        self.labels.append(label)
        self.timestamps.append(timestamp)

    def __len__(self) -> int:
        return len(self.labels)


ESTIMATORS: dict[str, Callable[[], ClassifierMixin]] = {
    "logistic": lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
    "gbm": lambda: GradientBoostingClassifier(
        n_estimators=100, max_depth=3, learning_rate=0.1, subsample=0.8, random_state=7
    ),
}


def encode_all(layout: FeatureLayout, data: TrainingSet) -> np.ndarray:
    matrix = np.zeros((len(data), layout.width), dtype=np.float32)
    for i in range(len(data)):
        action = data.actions[i]
        matrix[i] = layout.encode(
            data.customers[i], data.contexts[i], [action], layout.action_row(action)[None, :]
        )[0]
    return matrix


def _to_onnx(estimator: ClassifierMixin, width: int) -> bytes:
    onnx_model = convert_sklearn(
        estimator,
        initial_types=[("features", FloatTensorType([None, width]))],
        options={id(estimator): {"zipmap": False}},
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    return bytes(onnx_model.SerializeToString())


def _onnx_probabilities(onnx_bytes: bytes, matrix: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(
        onnx_bytes, session_options(), providers=["CPUExecutionProvider"]
    )
    (probabilities,) = session.run(["probabilities"], {"features": matrix})
    return np.asarray(probabilities, dtype=np.float64)[:, 1]


def train_model(
    data: TrainingSet,
    registry: ModelRegistry,
    candidates: Sequence[str] = ("logistic", "gbm"),
    promote: bool = True,
    source: str = "unknown",
) -> tuple[str, dict[str, Any]]:
    """Fit each candidate estimator, keep the best by hold-out log loss, export, register."""
    if len(data) < 50 or len(set(data.labels)) < 2:
        raise ValueError("need at least 50 rows with both outcomes to train")
    order = np.argsort(np.asarray(data.timestamps), kind="stable")
    layout = FeatureLayout.infer(data.customers, data.contexts, data.actions)
    matrix = encode_all(layout, data)[order]
    labels = np.asarray(data.labels, dtype=np.int64)[order]
    cut = int(len(labels) * 0.8)
    train_x, test_x, train_y, test_y = matrix[:cut], matrix[cut:], labels[:cut], labels[cut:]
    if len(np.unique(train_y)) < 2:  # else the estimator's own message names no cause
        raise ValueError(
            "need both outcomes in the older 80% of the rows, which the model learns from "
            "(the newest 20% test it)"
        )

    results: dict[str, dict[str, float]] = {}
    fitted: dict[str, ClassifierMixin] = {}
    for name in candidates:
        started = time.perf_counter()
        estimator = ESTIMATORS[name]()
        estimator.fit(train_x, train_y)
        probabilities = estimator.predict_proba(test_x)[:, 1]
        results[name] = {
            "log_loss": float(log_loss(test_y, probabilities, labels=[0, 1])),
            "auc": float(roc_auc_score(test_y, probabilities)) if len(set(test_y)) > 1 else 0.5,
            "fit_seconds": time.perf_counter() - started,
        }
        fitted[name] = estimator
    best = min(results, key=lambda n: results[n]["log_loss"])
    estimator = fitted[best]
    onnx_bytes = _to_onnx(estimator, layout.width)
    difference = float(
        np.max(
            np.abs(_onnx_probabilities(onnx_bytes, test_x) - estimator.predict_proba(test_x)[:, 1])
        )
    )
    if difference > PARITY_TOLERANCE:
        raise ExportParityError(f"ONNX differs from scikit-learn by {difference:.2e}")
    stamps = np.asarray(data.timestamps)
    metadata: dict[str, Any] = {
        "estimator": best,
        "features": layout.to_json(),
        "metrics": results,
        "parity_max_abs_diff": difference,
        "rows": len(labels),
        "positive_rate": float(labels.mean()),
        "training_window": {"from": float(stamps.min()), "to": float(stamps.max())},
        "source": source,
        "created_at": time.time(),
    }
    version = registry.register(onnx_bytes, metadata, promote=promote)
    return version, metadata
