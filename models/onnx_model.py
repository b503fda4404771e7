"""Serving a registered model: one ONNX Runtime session per process, built at load.

Loading is apart from scoring (STYLE 7): :func:`load_model` builds the session once (a
binary boosted-tree classifier as its margin, see :mod:`models.margin`);
:meth:`OnnxModel.bind` precomputes the action columns of a catalogue; the bound
scorer then makes exactly one ``session.run`` per decision.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from models.adaptive_kernels import logits
from models.hashing import logit
from models.layout import BoundLayout, FeatureLayout
from models.margin import (
    MARGIN_OUTPUT,
    agrees,
    clipped_margin,
    margin_model,
    margin_probabilities,
    probe_rows,
)
from models.registry import ModelRegistry

log = logging.getLogger("nba.models")

LOGIT_EPS = 1e-9  # probabilities are clipped to [eps, 1 - eps] before their log-odds
LOGIT_LIMIT = float(logit(1.0 - LOGIT_EPS))
Ask = tuple[Mapping[str, Any], Mapping[str, Any], np.ndarray]


class OnnxModel:
    """``session``: the registered graph; ``margin``: the same trees returning their
    log-odds (:mod:`models.margin`), used instead when the graph allows it."""

    def __init__(
        self,
        session: ort.InferenceSession,
        layout: FeatureLayout,
        version: str,
        margin: ort.InferenceSession | None = None,
    ) -> None:
        self.session = session
        self.layout = layout
        self.version = version
        self.margin = margin
        self.input_name = session.get_inputs()[0].name
        outputs = [o.name for o in session.get_outputs()]
        self.output_name = "probabilities" if "probabilities" in outputs else outputs[-1]

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        """Positive-class probability per row."""
        if self.margin is not None:
            (margin,) = self.margin.run([MARGIN_OUTPUT], {self.input_name: matrix})
            out = np.empty(len(margin))
            margin_probabilities(margin, LOGIT_LIMIT, out)
            return out
        (probabilities,) = self.session.run([self.output_name], {self.input_name: matrix})
        return np.ascontiguousarray(np.asarray(probabilities, dtype=np.float64)[:, 1])

    def logits(self, matrix: np.ndarray) -> np.ndarray:
        """Positive-class log-odds per row, within ±:data:`LOGIT_LIMIT`."""
        if self.margin is None:
            probabilities = self.predict(matrix)
            found = np.empty(len(probabilities))
            logits(probabilities, LOGIT_EPS, found)
            return found
        (margin,) = self.margin.run([MARGIN_OUTPUT], {self.input_name: matrix})
        out = np.empty(len(margin))
        clipped_margin(margin, LOGIT_LIMIT, out)
        return out

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
        rows = np.asarray(action_indices, dtype=np.intp)
        return self._many([(customer, context, rows)], self.model.predict)[0]

    def score_many(self, asks: Sequence[Ask]) -> list[np.ndarray]:
        """Several decisions' candidates in one ``session.run`` (a batch)."""
        return self._many(asks, self.model.predict)

    def logits_many(self, asks: Sequence[Ask]) -> list[np.ndarray]:
        """:meth:`score_many` as log-odds (where the adaptive model starts from)."""
        return self._many(asks, self.model.logits)

    def _many(self, asks: Sequence[Ask], run: Any) -> list[np.ndarray]:
        matrices = [
            self.bound.encode(customer, context, np.asarray(idx, dtype=np.intp))
            for customer, context, idx in asks
            if len(idx)
        ]
        if len(matrices) <= 1:  # one decision (or none): no concatenation and split
            scores = [run(m) for m in matrices]
        else:
            bounds = np.cumsum([len(m) for m in matrices])[:-1]
            scores = np.split(run(np.concatenate(matrices)), bounds)
        found = iter(scores)
        return [next(found) if len(idx) else np.zeros(0) for _, _, idx in asks]


def session_options() -> ort.SessionOptions:
    """One thread: at these batch sizes more threads only add tail latency."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


def _session(model: bytes) -> ort.InferenceSession:
    return ort.InferenceSession(
        model, sess_options=session_options(), providers=["CPUExecutionProvider"]
    )


def margin_session(graph: onnx.ModelProto, classifier: OnnxModel) -> ort.InferenceSession | None:
    """A session for the margin of ``graph`` if it has one and it gives the classifier's
    own probabilities on probe rows; else None (the classifier serves)."""
    margin = margin_model(graph)
    if margin is None:
        return None
    probe = probe_rows(graph, classifier.layout.width)
    try:
        found = _session(margin.SerializeToString())
        (logits,) = found.run([MARGIN_OUTPUT], {classifier.input_name: probe})
    except Exception as exc:  # ONNX Runtime refused the rewrite: the classifier serves
        log.warning("model %s: margin form not built (%s)", classifier.version, exc)
        return None
    if not agrees(classifier.predict(probe), np.asarray(logits)[:, 0]):
        log.warning("model %s: margin form disagrees with the classifier", classifier.version)
        return None
    clipped_margin(logits, LOGIT_LIMIT, np.empty(len(logits)))  # compiled now, not at
    return found  # the first decision (agrees loaded the other kernel)


def load_model(path: Path, version: str, layout: FeatureLayout) -> OnnxModel:
    data = (path / "model.onnx").read_bytes()
    model = OnnxModel(_session(data), layout, version)
    model.margin = margin_session(onnx.load_from_string(data), model)
    return model


def load_current(registry: ModelRegistry) -> OnnxModel | None:
    version = registry.current()
    if version is None:
        return None
    metadata = registry.metadata(version)
    layout = FeatureLayout.from_json(metadata["features"])
    return load_model(registry.path(version), version, layout)
