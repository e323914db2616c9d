"""scikit-learn forests as one ONNX TreeEnsemble node, built from the trees' arrays.

skl2onnx's own forest converter walks every node in Python: for a 30-tree forest on 2,000 rows
(23,000 nodes) that is 0.5 s, more than the fit, and a retraining round pays it on every
export. These converters build the same attributes with numpy in a few milliseconds and plug
into skl2onnx (`CONVERTERS`, its `custom_conversion_functions`), so the rest of a pipeline is
converted as before. They write what skl2onnx writes (same outputs, one probability per leaf
for binary classifiers, thresholds rounded down to float32 the way scikit-learn compares), and
send a NaN where scikit-learn does (`missing_go_to_left`); anything else (float64 inputs,
several outputs, the decision-path options) goes to skl2onnx's converter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from onnx import AttributeProto
from skl2onnx.common._registration import get_converter
from skl2onnx.common.data_types import FloatTensorType
from sklearn.ensemble import ExtraTreesClassifier, ExtraTreesRegressor, RandomForestClassifier, RandomForestRegressor

_ML_DOMAIN = "ai.onnx.ml"
_LEAF = -1  # scikit-learn's children of a leaf


@dataclass
class _Nodes:
    """Every node of every tree, in tree then node order, as the TreeEnsemble attributes want."""

    tree_ids: np.ndarray
    node_ids: np.ndarray
    leaf: np.ndarray
    feature_ids: np.ndarray
    thresholds: np.ndarray
    true_ids: np.ndarray
    false_ids: np.ndarray
    missing_true: np.ndarray
    values: np.ndarray  # (nodes, outputs): each leaf's share of the ensemble's answer


def float32_thresholds(thresholds: np.ndarray) -> np.ndarray:
    """For each float64 threshold t, the largest float32 w <= t: a float32 x has x <= w exactly
    when x <= t, which is how scikit-learn compares a float32 row with a float64 threshold."""
    rounded = thresholds.astype(np.float32)
    above = rounded.astype(np.float64) > thresholds
    rounded[above] = np.nextafter(rounded[above], np.float32(-np.inf))
    return rounded


def _nodes(forest, normalise: bool) -> _Nodes:
    parts = []
    for tree_id, estimator in enumerate(forest.estimators_):
        tree = estimator.tree_
        leaf = tree.children_left == _LEAF
        values = tree.value[:, 0, :].astype(np.float64)
        if normalise:  # class counts (or fractions) per leaf -> probabilities
            totals = values.sum(axis=1, keepdims=True)
            values = values / np.where(totals == 0, 1.0, totals)
        missing = getattr(tree, "missing_go_to_left", None)
        parts.append(
            (
                np.full(tree.node_count, tree_id, dtype=np.int64),
                np.arange(tree.node_count, dtype=np.int64),
                leaf,
                np.where(leaf, 0, tree.feature).astype(np.int64),
                np.where(leaf, 0.0, tree.threshold),
                np.where(leaf, 0, tree.children_left).astype(np.int64),
                np.where(leaf, 0, tree.children_right).astype(np.int64),
                np.zeros(tree.node_count, np.int64) if missing is None else np.where(leaf, 0, missing).astype(np.int64),
                values / len(forest.estimators_),
            )
        )
    joined = [np.concatenate(column) for column in zip(*parts, strict=True)]
    nodes = _Nodes(*joined)
    nodes.thresholds = float32_thresholds(nodes.thresholds)
    nodes.thresholds[nodes.leaf] = 0.0
    return nodes


def _ints(name: str, values: np.ndarray) -> AttributeProto:
    attribute = AttributeProto(name=name, type=AttributeProto.INTS)
    attribute.ints.extend(values.tolist())
    return attribute


def _floats(name: str, values: np.ndarray) -> AttributeProto:
    attribute = AttributeProto(name=name, type=AttributeProto.FLOATS)
    attribute.floats.extend(values.astype(np.float32).tolist())
    return attribute


def _node_attributes(nodes: _Nodes) -> list[AttributeProto]:
    modes = AttributeProto(name="nodes_modes", type=AttributeProto.STRINGS)
    modes.strings.extend(np.where(nodes.leaf, b"LEAF", b"BRANCH_LEQ").tolist())
    return [
        _ints("nodes_treeids", nodes.tree_ids),
        _ints("nodes_nodeids", nodes.node_ids),
        _ints("nodes_featureids", nodes.feature_ids),
        modes,
        _floats("nodes_values", nodes.thresholds),
        _ints("nodes_truenodeids", nodes.true_ids),
        _ints("nodes_falsenodeids", nodes.false_ids),
        _ints("nodes_missing_value_tracks_true", nodes.missing_true),
        _floats("nodes_hitrates", np.ones(nodes.leaf.size)),
    ]


def _leaf_attributes(nodes: _Nodes, prefix: str, values: np.ndarray) -> list[AttributeProto]:
    """`prefix`_treeids/_nodeids/_ids/_weights: each leaf's weight for each of `values`' columns."""
    leaves = np.flatnonzero(nodes.leaf)
    columns = values.shape[1]
    return [
        _ints(f"{prefix}_treeids", np.repeat(nodes.tree_ids[leaves], columns)),
        _ints(f"{prefix}_nodeids", np.repeat(nodes.node_ids[leaves], columns)),
        _ints(f"{prefix}_ids", np.tile(np.arange(columns), leaves.size)),
        _floats(f"{prefix}_weights", values[leaves].ravel()),
    ]


def _ours(operator, container, **more_options: bool) -> bool:
    """Whether these converters can write this forest (else skl2onnx's does)."""
    forest = operator.raw_operator
    options = container.get_options(forest, dict(decision_path=False, decision_leaf=False, **more_options))
    return isinstance(operator.inputs[0].type, FloatTensorType) and forest.n_outputs_ == 1 and not any(options.values())


def _add(container, scope, op_type: str, inputs, outputs, attributes: list[AttributeProto], **small) -> None:
    container.add_node(
        op_type, inputs, outputs, op_domain=_ML_DOMAIN, op_version=1,
        name=scope.get_unique_operator_name(op_type), post_transform="NONE", **small,
    )  # fmt: skip
    container.nodes[-1].attribute.extend(attributes)  # built above: make_attribute is per element


def convert_forest_classifier(scope, operator, container) -> None:
    forest = operator.raw_operator
    if not _ours(operator, container, raw_scores=False) or not _plain_classes(forest.classes_):
        get_converter(operator.type)(scope, operator, container)
        return
    nodes = _nodes(forest, normalise=True)
    # Two classes: the leaf's weight for class 1 only; the runtime gives class 0 the rest.
    values = nodes.values[:, 1:] if len(forest.classes_) == 2 else nodes.values
    integers = forest.classes_.dtype.kind in "iub"
    labels = {
        "classlabels_int64s" if integers else "classlabels_strings": [
            int(c) if integers else str(c) for c in forest.classes_
        ]
    }
    _add(
        container, scope, "TreeEnsembleClassifier", operator.input_full_names,
        [operator.outputs[0].full_name, operator.outputs[1].full_name],
        _node_attributes(nodes) + _leaf_attributes(nodes, "class", values), **labels,
    )  # fmt: skip


def convert_forest_regressor(scope, operator, container) -> None:
    forest = operator.raw_operator
    if not _ours(operator, container):
        get_converter(operator.type)(scope, operator, container)
        return
    nodes = _nodes(forest, normalise=False)
    _add(
        container, scope, "TreeEnsembleRegressor", operator.input_full_names, [operator.outputs[0].full_name],
        _node_attributes(nodes) + _leaf_attributes(nodes, "target", nodes.values), n_targets=1,
    )  # fmt: skip


def _plain_classes(classes: np.ndarray) -> bool:
    """Integer, boolean or string labels (what skl2onnx's parser typed the label output as)."""
    return classes.dtype.kind in "iubU" or (classes.dtype.kind == "O" and all(isinstance(c, str) for c in classes))


CONVERTERS = {
    RandomForestClassifier: convert_forest_classifier,
    ExtraTreesClassifier: convert_forest_classifier,
    RandomForestRegressor: convert_forest_regressor,
    ExtraTreesRegressor: convert_forest_regressor,
}
