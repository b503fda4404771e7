"""Serving a registered model: one ONNX Runtime session per process, built at load.

Loading is apart from scoring (STYLE 7): :func:`load_model` builds the session once;
:meth:`OnnxModel.bind` precomputes the action columns of a catalogue; the bound
scorer then makes exactly one ``session.run`` per decision.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from models.layout import BoundLayout, FeatureLayout
from models.registry import ModelRegistry


class OnnxModel:
    def __init__(self, session: ort.InferenceSession, layout: FeatureLayout, version: str) -> None:
        self.session = session
        self.layout = layout
        self.version = version
        self.input_name = session.get_inputs()[0].name
        outputs = [o.name for o in session.get_outputs()]
        self.output_name = "probabilities" if "probabilities" in outputs else outputs[-1]

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        """Positive-class probability per row."""
        (probabilities,) = self.session.run([self.output_name], {self.input_name: matrix})
        return np.ascontiguousarray(np.asarray(probabilities, dtype=np.float64)[:, 1])

    def bind(self, actions: Sequence[Mapping[str, Any]]) -> BoundModel:
        return BoundModel(self, list(actions), self.layout.bind(actions))


class BoundModel:
    """A model with the action columns of one catalogue computed (the engine's Scorer)."""

    def __init__(
        self, model: OnnxModel, actions: list[Mapping[str, Any]], bound: BoundLayout
    ) -> None:
        self.model = model
        self.version = model.version
        self.actions = actions
        self.bound = bound

    def score(
        self,
        customer: Mapping[str, Any],
        context: Mapping[str, Any],
        action_indices: np.ndarray | Sequence[int],
    ) -> np.ndarray:
        if not len(action_indices):
            return np.zeros(0)
        matrix = self.bound.encode(customer, context, np.asarray(action_indices, dtype=np.intp))
        return self.model.predict(matrix)

    def score_many(
        self, asks: Sequence[tuple[Mapping[str, Any], Mapping[str, Any], np.ndarray]]
    ) -> list[np.ndarray]:
        """Several decisions' candidates in one ``session.run`` (a batch)."""
        if len(asks) < 2:  # one decision: no concatenation and split
            return [self.score(*ask) for ask in asks]
        matrices = [
            self.bound.encode(customer, context, np.asarray(idx, dtype=np.intp))
            for customer, context, idx in asks
        ]
        scores = self.model.predict(np.concatenate(matrices))
        return np.split(scores, np.cumsum([len(m) for m in matrices])[:-1])


def session_options() -> ort.SessionOptions:
    """One thread: at these batch sizes more threads only add tail latency."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


def load_model(path: Path, version: str, layout: FeatureLayout) -> OnnxModel:
    session = ort.InferenceSession(
        str(path / "model.onnx"), sess_options=session_options(), providers=["CPUExecutionProvider"]
    )
    return OnnxModel(session, layout, version)


def load_current(registry: ModelRegistry) -> OnnxModel | None:
    version = registry.current()
    if version is None:
        return None
    metadata = registry.metadata(version)
    layout = FeatureLayout.from_json(metadata["features"])
    return load_model(registry.path(version), version, layout)
