"""A binary classifier served by its margin: the log-odds its probability is σ of.

The engine's two estimators export (skl2onnx) as classifiers that compute a score, then
a label and both class probabilities from it. ONNX Runtime serves the score alone faster:

- gradient boosting, one ``TreeEnsembleClassifier`` (probability ``σ(base + Σ leaf
  weights)``): the same trees as a ``TreeEnsembleRegressor`` that returns the sum took
  66 µs against 90 µs for the in-process benchmark's 100 rows and 100 trees;
- logistic regression, a ``Scaler`` then a ``LinearClassifier``: one ``LinearRegressor``
  whose coefficients have the scaler folded in, 5.4 µs against 19 µs for a demo
  decision's 18 rows (the scaler alone took 13).

(Medians of thousands of calls on real rows, side by side.) The engine wants the log-odds
anyway where the adaptive model starts from the base model, and σ of 100 numbers costs
1 µs compiled.

The rewrite is made at load, from the registered file, which stays the standard export;
:func:`agrees` checks it against the classifier on probe rows (:func:`probe_rows`: both
sides of every split, or values around the scaler's offsets) before it is used, so a model
it does not understand, or one whose folded form loses precision, keeps its classifier.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from numba import njit
from onnx import TensorProto, helper

from models.adaptive_kernels import clipped_sigma

__all__ = [
    "MARGIN_OUTPUT",
    "agrees",
    "clipped_margin",
    "margin_model",
    "margin_probabilities",
    "probe_rows",
]

MARGIN_OUTPUT = "margin"
_ENSEMBLE = "TreeEnsembleClassifier"
_LINEAR = "LinearClassifier"
_SCALER = "Scaler"
_ML_DOMAIN = "ai.onnx.ml"
_NODE_ATTRIBUTES = (
    "nodes_falsenodeids",
    "nodes_featureids",
    "nodes_hitrates",
    "nodes_hitrates_as_tensor",
    "nodes_missing_value_tracks_true",
    "nodes_modes",
    "nodes_nodeids",
    "nodes_treeids",
    "nodes_truenodeids",
    "nodes_values",
    "nodes_values_as_tensor",
    "base_values",
    "base_values_as_tensor",
)
_LEAF_ATTRIBUTES = {  # the classifier's name -> the regressor's
    "class_nodeids": "target_nodeids",
    "class_treeids": "target_treeids",
    "class_weights": "target_weights",
    "class_weights_as_tensor": "target_weights_as_tensor",
}


def _attributes(node: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _chain(model: onnx.ModelProto) -> list[onnx.NodeProto] | None:
    """The graph's nodes but Identity, if they form one chain from its one input."""
    if len(model.graph.input) != 1:
        return None
    nodes = [n for n in model.graph.node if n.op_type != "Identity"]
    feed = model.graph.input[0].name
    for node in nodes:
        if node.domain != _ML_DOMAIN or list(node.input) != [feed]:
            return None
        feed = node.output[-1] if node.op_type == _SCALER else ""
    return nodes


def _ensemble(model: onnx.ModelProto) -> onnx.NodeProto | None:
    """The graph's tree classifier, if it is all the graph computes."""
    nodes = _chain(model)
    if nodes is None or [n.op_type for n in nodes] != [_ENSEMBLE]:
        return None
    return nodes[0]


def _linear(model: onnx.ModelProto) -> tuple[dict[str, Any] | None, dict[str, Any]] | None:
    """A linear classifier's attributes and its scaler's (None without one), if the
    scaler and the classifier are all the graph computes."""
    nodes = _chain(model)
    kinds = None if nodes is None else [n.op_type for n in nodes]
    if nodes is None or kinds not in ([_LINEAR], [_SCALER, _LINEAR]):
        return None
    scaler = _attributes(nodes[0]) if len(nodes) == 2 else None
    return scaler, _attributes(nodes[-1])


def _binary_logistic(found: dict[str, Any]) -> bool:
    labels = found.get("classlabels_int64s") or found.get("classlabels_ints")
    labels = labels or found.get("classlabels_strings") or []
    return len(labels) == 2 and found.get("post_transform") == b"LOGISTIC"


def margin_model(model: onnx.ModelProto) -> onnx.ModelProto | None:
    """The margin of a binary classifier, as a graph with one output ``margin`` of shape
    (rows, 1); None for a model that is not one of the forms above."""
    tree = _ensemble(model)
    if tree is not None:
        node = _tree_margin(tree, model.graph.input[0].name)
    else:
        linear = _linear(model)
        node = None if linear is None else _linear_margin(*linear, model.graph.input[0].name)
    if node is None:
        return None
    graph = helper.make_graph(
        [node],
        f"{model.graph.name}_margin",
        [model.graph.input[0]],
        [helper.make_tensor_value_info(MARGIN_OUTPUT, TensorProto.FLOAT, [None, 1])],
    )
    margin = helper.make_model(graph, opset_imports=list(model.opset_import))
    margin.ir_version = model.ir_version
    return margin


def _tree_margin(tree: onnx.NodeProto, feed: str) -> onnx.NodeProto | None:
    """σ(base + Σ leaf weights): one score (class 0's weights), logistic."""
    found = _attributes(tree)
    base = found.get("base_values") or []
    if (
        not _binary_logistic(found)
        or set(found.get("class_ids", [])) != {0}
        or len(base) > 1
        or "base_values_as_tensor" in found
    ):
        return None
    kept = {name: found[name] for name in _NODE_ATTRIBUTES if name in found}
    leaves = {new: found[old] for old, new in _LEAF_ATTRIBUTES.items() if old in found}
    return helper.make_node(
        "TreeEnsembleRegressor",
        [feed],
        [MARGIN_OUTPUT],
        domain=_ML_DOMAIN,
        n_targets=1,
        aggregate_function="SUM",
        post_transform="NONE",
        target_ids=[0] * len(found["class_nodeids"]),
        **kept,
        **leaves,
    )


def _linear_margin(
    scaler: dict[str, Any] | None, found: dict[str, Any], feed: str
) -> onnx.NodeProto | None:
    """σ(w·x' + b) with x' = (x - offset) × scale: the last class's row of coefficients
    (the positive class's), the scaler folded in: w × scale, b - Σ w × scale × offset."""
    rows = len(found.get("intercepts", []))
    coefficients = np.asarray(found.get("coefficients", []), dtype=np.float64)
    if not _binary_logistic(found) or found.get("multi_class", 0) != 0 or rows not in (1, 2):
        return None
    if len(coefficients) % rows:
        return None
    weights = coefficients.reshape(rows, -1)[-1]
    bias = float(found["intercepts"][-1])
    if scaler is not None:
        scale = np.asarray(scaler.get("scale", [1.0]), dtype=np.float64)
        offset = np.asarray(scaler.get("offset", [0.0]), dtype=np.float64)
        if {len(scale), len(offset)} - {1, len(weights)}:
            return None
        weights = weights * scale
        bias -= float(np.sum(weights * offset))
    return helper.make_node(
        "LinearRegressor",
        [feed],
        [MARGIN_OUTPUT],
        domain=_ML_DOMAIN,
        coefficients=weights.tolist(),
        intercepts=[bias],
        targets=1,
    )


def probe_rows(model: onnx.ModelProto, width: int, rows: int = 256, seed: int = 0) -> np.ndarray:
    """Rows to compare two forms of a model on. For trees, every feature sits on, just
    below or just above one of its split thresholds (or at 0; just: 0.5, or a millionth
    of a large threshold, beyond float32's spacing), so that between them the
    rows take both branches of every split; behind a scaler, each feature lies within a
    few of its scale units of its offset (a timestamp near its mean, not near 0, where
    a folded form could lose precision)."""
    rng = np.random.default_rng(seed)
    probe = rng.normal(size=(rows, width))
    tree = _ensemble(model)
    linear = _linear(model) if tree is None else None
    if tree is not None:
        found = _attributes(tree)
        thresholds: dict[int, list[float]] = {}
        for feature, value, mode in zip(
            found.get("nodes_featureids", []),
            found.get("nodes_values", []),
            found.get("nodes_modes", []),
            strict=False,
        ):
            if mode != b"LEAF" and 0 <= feature < width:
                thresholds.setdefault(int(feature), []).append(float(value))
        for feature, values in thresholds.items():
            steps = [max(0.5, abs(v) * 1e-6) for v in values]  # beyond float32's spacing
            choices = np.array(
                [
                    0.0,
                    *values,
                    *(v - d for v, d in zip(values, steps, strict=True)),
                    *(v + d for v, d in zip(values, steps, strict=True)),
                ]
            )
            probe[:, feature] = rng.choice(choices, size=rows)
    elif linear is not None and linear[0] is not None:
        scaler = linear[0]
        scale = np.broadcast_to(np.asarray(scaler.get("scale", [1.0]), dtype=np.float64), width)
        offset = np.broadcast_to(np.asarray(scaler.get("offset", [0.0]), dtype=np.float64), width)
        spread = np.divide(2.0, np.abs(scale), out=np.ones(width), where=scale != 0)
        probe = offset + probe * spread
    return probe.astype(np.float32)


def agrees(probabilities: np.ndarray, margin: np.ndarray, tolerance: float = 1e-5) -> bool:
    """Whether σ(margin) gives the classifier's positive-class probabilities."""
    expected = np.empty(len(margin))
    margin_probabilities(np.asarray(margin, dtype=np.float32).reshape(-1, 1), 50.0, expected)
    return bool(np.all(np.abs(expected - np.asarray(probabilities, dtype=np.float64)) <= tolerance))


# What a session's (rows, 1) float32 output becomes, in one compiled pass: with numpy the
# cast, the clip and the σ were five array calls, 14 µs of 100 rows against 1.


@njit(cache=True)
def clipped_margin(margin: np.ndarray, limit: float, out: np.ndarray) -> None:
    """``out[i]``: ``margin[i, 0]`` within ±``limit``, as float64."""
    for i in range(margin.shape[0]):
        out[i] = min(max(np.float64(margin[i, 0]), -limit), limit)


@njit(cache=True)
def margin_probabilities(margin: np.ndarray, limit: float, out: np.ndarray) -> None:
    """``out[i]``: σ of ``margin[i, 0]`` clipped to ±``limit``."""
    for i in range(margin.shape[0]):
        out[i] = clipped_sigma(np.float64(margin[i, 0]), limit)
