"""The forest converters: the ONNX a retraining round exports for a forest answers as scikit-learn
does (missing values included) and carries the very node skl2onnx would write."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper
from skl2onnx import to_onnx
from sklearn.ensemble import ExtraTreesClassifier, ExtraTreesRegressor, RandomForestClassifier, RandomForestRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mlaas.export import sklearn_to_onnx
from mlaas.onnx_forests import float32_thresholds

rng = np.random.default_rng(7)
X = rng.normal(size=(400, 6)).astype(np.float32)
ROWS = rng.normal(size=(300, 6)).astype(np.float32)


def answers(model_bytes: bytes, rows: np.ndarray) -> list[np.ndarray]:
    return ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"]).run(None, {"X": rows})


def tree_node_attributes(model: onnx.ModelProto) -> dict:
    (node,) = [n for n in model.graph.node if n.op_type.startswith("TreeEnsemble")]
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


CLASSIFIERS = [
    pytest.param(RandomForestClassifier(n_estimators=20, random_state=0), (X[:, 0] > 0).astype(np.int64), id="binary"),
    pytest.param(ExtraTreesClassifier(n_estimators=20, random_state=0), np.digitize(X[:, 1], [-0.5, 0.5]), id="three"),
    pytest.param(
        make_pipeline(StandardScaler(), RandomForestClassifier(n_estimators=10, random_state=0)),
        np.array(["low", "mid", "high"])[np.digitize(X[:, 2], [-0.5, 0.5])], id="pipeline-string-labels",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("model", "y"), CLASSIFIERS)
def test_a_forest_classifier_answers_as_scikit_learn_and_as_skl2onnx_would(model, y):
    model.fit(X, y)
    ours = sklearn_to_onnx(model, X)
    labels, probabilities = answers(ours, ROWS)
    assert np.allclose(probabilities, model.predict_proba(ROWS), atol=1e-6)
    clear = np.sort(model.predict_proba(ROWS), axis=1)[:, -1] > np.sort(model.predict_proba(ROWS), axis=1)[:, -2] + 1e-6
    assert np.array_equal(labels[clear], model.predict(ROWS)[clear])  # ties may break either way
    final = model.steps[-1][1] if hasattr(model, "steps") else model
    theirs = to_onnx(model, X[:1], options={id(final): {"zipmap": False}}, target_opset={"": 17, "ai.onnx.ml": 3})
    mine, skl2onnx_node = tree_node_attributes(onnx.load_from_string(ours)), tree_node_attributes(theirs)
    # skl2onnx sends every missing value to the false branch; scikit-learn (and we) do not.
    mine.pop("nodes_missing_value_tracks_true"), skl2onnx_node.pop("nodes_missing_value_tracks_true")
    assert mine.keys() == skl2onnx_node.keys()
    for name in mine:
        assert mine[name] == skl2onnx_node[name], name


@pytest.mark.parametrize("forest", [RandomForestRegressor, ExtraTreesRegressor])
def test_a_forest_regressor_in_a_pipeline_answers_as_scikit_learn(forest):
    model = make_pipeline(StandardScaler(), forest(n_estimators=15, random_state=0)).fit(X, X[:, 0] * 2 + X[:, 1] ** 2)
    (predicted,) = answers(sklearn_to_onnx(model, X), ROWS)
    assert predicted.shape == (len(ROWS), 1)
    assert np.allclose(predicted.ravel(), model.predict(ROWS), atol=1e-5)


def test_missing_values_take_the_branch_scikit_learn_takes():
    learnt_from = X.copy()
    learnt_from[rng.random(X.shape) < 0.2] = np.nan
    y = (np.nan_to_num(X[:, 0]) > 0).astype(np.int64)
    rows = ROWS.copy()
    rows[rng.random(rows.shape) < 0.3] = np.nan
    for seen_missing in (X, learnt_from):
        model = RandomForestClassifier(n_estimators=10, random_state=0).fit(seen_missing, y)
        _, probabilities = answers(sklearn_to_onnx(model, seen_missing), rows)
        assert np.allclose(probabilities, model.predict_proba(rows), atol=1e-6)


def test_a_forest_it_does_not_write_goes_to_skl2onnx():
    """Two outputs at once: skl2onnx's converter writes it, and the answers still match."""
    targets = np.column_stack([X[:, 0], X[:, 1] - X[:, 2]])
    model = RandomForestRegressor(n_estimators=5, random_state=0).fit(X, targets)
    (predicted,) = answers(sklearn_to_onnx(model, X), ROWS)
    assert np.allclose(predicted, model.predict(ROWS), atol=1e-5)


def test_thresholds_round_down_to_the_float32_that_compares_as_scikit_learn_does():
    thresholds = np.concatenate([rng.normal(size=10_000), [0.0, 1.0, -1.0, 0.1, 1e-30]])
    rounded = float32_thresholds(thresholds)
    assert rounded.dtype == np.float32
    assert np.all(rounded.astype(np.float64) <= thresholds)
    assert np.all(np.nextafter(rounded, np.float32(np.inf)).astype(np.float64) > thresholds)
