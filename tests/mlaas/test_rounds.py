"""A round's statistics: the paired test that decides whether a challenger rolls out, and the
held-out labels it is judged on (a held-out part, or every fold of a cross-validation)."""

from __future__ import annotations

import numpy as np
import pytest

from mlaas.recipes import recipe_from_steps
from mlaas.retraining.rounds import (
    FOLDS,
    cross_fit,
    cross_validated_round,
    folds_of,
    holdout_split,
    judge,
    out_of_bag_predictions,
    train,
)
from mlaas.v1 import types_pb2


def test_the_challenger_must_be_better_by_a_paired_test():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 2, 400)
    champion = np.where(rng.random(400) < 0.80, truth, 1 - truth)
    better = np.where(rng.random(400) < 0.90, truth, 1 - truth)
    verdict = judge(types_pb2.TASK_CLASSIFICATION, truth, champion, better, 0.95)
    assert verdict.roll_out and verdict.p_value < 0.05 and verdict.challenger > verdict.champion
    # one more right answer out of 400 is no evidence
    barely = champion.copy()
    barely[np.flatnonzero(champion != truth)[0]] = truth[np.flatnonzero(champion != truth)[0]]
    verdict = judge(types_pb2.TASK_CLASSIFICATION, truth, champion, barely, 0.95)
    assert not verdict.roll_out and "not better at 95% confidence" in verdict.reason
    assert not judge(types_pb2.TASK_CLASSIFICATION, truth, champion, champion, 0.95).roll_out  # a tie
    # a follow-up round (more labels of the same concept) rolls out unless shown worse: one
    # answer fewer right is no evidence either way (out-of-bag votes understate a forest)
    assert judge(types_pb2.TASK_CLASSIFICATION, truth, champion, barely, 0.95, follow_up=True).roll_out
    slightly = judge(types_pb2.TASK_CLASSIFICATION, truth, barely, champion, 0.95, follow_up=True)
    assert slightly.roll_out and "not worse, on more labels" in slightly.reason
    worse = judge(types_pb2.TASK_CLASSIFICATION, truth, better, champion, 0.95, follow_up=True)
    assert not worse.roll_out and "worse; the served version stays" in worse.reason
    regression_truth = rng.normal(size=300)
    close = regression_truth + rng.normal(scale=0.5, size=300)
    far = regression_truth + rng.normal(scale=1.5, size=300)
    assert not judge(types_pb2.TASK_REGRESSION, regression_truth, close, far, 0.95, follow_up=True).roll_out
    assert judge(types_pb2.TASK_REGRESSION, regression_truth, close, close + 1e-3, 0.95, follow_up=True).roll_out


def test_a_regression_challenger_is_judged_on_paired_absolute_errors():
    rng = np.random.default_rng(1)
    truth = rng.normal(size=300)
    champion = truth + rng.normal(scale=1.0, size=300)
    assert judge(types_pb2.TASK_REGRESSION, truth, champion, truth + rng.normal(scale=0.5, size=300), 0.95).roll_out
    worse = truth + rng.normal(scale=1.5, size=300)
    assert not judge(types_pb2.TASK_REGRESSION, truth, champion, worse, 0.95).roll_out


def test_held_out_labels_are_ones_the_champion_never_learnt_from():
    fit, held = holdout_split(1_000, 0.25, seed=3, unseen_from=500)
    assert held.size == 250 and held.min() >= 500  # judged on new labels only
    assert sorted([*fit, *held]) == list(range(1_000))  # the challenger learns from all the rest
    assert holdout_split(1_000, 0.25, seed=3)[1].min() < 500  # with no such bound, from anywhere


def test_every_label_the_champion_never_saw_is_in_one_fold():
    fold = folds_of(1_000, unseen_from=400, folds=4, seed=1)
    assert np.all(fold[:400] == -1)  # the champion learnt from them: they only train
    assert sorted(np.bincount(fold[400:])) == [150, 150, 150, 150]
    assert list(folds_of(5, unseen_from=5)) == [-1, -1, -1, -1, 0]  # at least one label judges


class _Remembers:
    """A model that answers 1 for a row it was fitted on, 0 for any other."""

    def fit(self, X, y):
        self.seen = {tuple(row) for row in X}
        return self

    def predict(self, X):
        return np.array([int(tuple(row) in self.seen) for row in X])


def test_each_cross_validated_prediction_comes_from_a_fit_that_never_saw_the_row():
    X = np.arange(200, dtype=np.float32).reshape(100, 2)
    fold = folds_of(100, unseen_from=20, seed=2)
    model, predictions = cross_fit(lambda X, y: _Remembers().fit(X, y), X, np.zeros(100, np.int64), fold)
    assert predictions.shape == (80,) and not predictions.any()  # no fit predicted a row it learnt
    assert model.predict(X).all()  # what rolls out learnt from every row


def test_a_cross_validated_round_judges_on_every_unseen_label():
    """Four times the labels of a held-out quarter: a gain of 10 points on 200 labels since a
    change convinces the paired test, where its held-out 50 would not."""
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 260)
    X = np.zeros((260, 1), np.float32)
    champion = np.where(rng.random(260) < 0.75, y, 1 - y)  # the serving version's answers
    challenger = np.where(rng.random(260) < 0.85, y, 1 - y)  # its folds' answers

    def cross_fitted(X_fit, y_fit, fold):
        return b"model", challenger[fold >= 0]

    outcome = cross_validated_round(
        types_pb2.TASK_CLASSIFICATION, X, y, 60, lambda rows: champion[60:], cross_fitted, 0.95, False
    )
    assert outcome.held_out_samples == 200 and outcome.training_samples == 260
    assert outcome.verdict.roll_out and outcome.model == b"model", outcome.verdict.reason
    assert "on 200 held-out labels (cross-validated): better" in outcome.verdict.reason
    held_out_only = judge(types_pb2.TASK_CLASSIFICATION, y[60:110], champion[60:110], challenger[60:110], 0.95)
    assert not held_out_only.roll_out, held_out_only.reason


def test_a_regressors_cross_validated_predictions_stay_numbers_whatever_the_labels_type():
    from sklearn.linear_model import LinearRegression

    X = np.arange(40, dtype=np.float32).reshape(20, 2)
    y = np.arange(20, dtype=np.int64) * 3 + 1  # integer labels of a regression
    _, predictions = cross_fit(lambda X, y: LinearRegression().fit(X, y / 2), X, y, folds_of(20, 0, seed=1))
    assert predictions.dtype.kind == "f" and np.allclose(predictions, (y / 2)[folds_of(20, 0, seed=1) >= 0])


def counting(fit):
    """`fit`, and the list its calls are counted in."""
    calls = []

    def counted(X, y):
        calls.append(len(y))
        return fit(X, y)

    return counted, calls


@pytest.mark.parametrize("steps", [["RandomForestClassifier"], ["StandardScaler", "RandomForestClassifier"]])
def test_a_forest_is_judged_out_of_bag_in_one_fit_never_by_a_tree_that_learnt_the_row(steps):
    """Labels of pure noise: the forest on all rows knows every one (what it learnt), each row's
    out-of-bag trees answer at chance, as a model that never saw the row must."""
    recipe = recipe_from_steps([(("sklearn.ensemble." if "Forest" in s else "sklearn.preprocessing.") + s, {})
                                for s in steps])  # fmt: skip
    rng = np.random.default_rng(5)
    X, y = rng.normal(size=(400, 3)), rng.integers(0, 2, 400)
    fold = folds_of(400, unseen_from=100, seed=3)
    fit, calls = counting(lambda X, y: train(recipe, X, y))
    model, predictions = cross_fit(fit, X, y, fold)
    assert calls == [400]  # the model that rolls out, nothing more
    assert np.mean(model.predict(X) == y) > 0.95  # it learnt the noise
    assert predictions.shape == (300,) and 0.4 < np.mean(predictions == y[100:]) < 0.6


def test_out_of_bag_predictions_are_scikit_learns_own():
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

    rng = np.random.default_rng(6)
    X = rng.normal(size=(300, 4))
    labels = np.array(["low", "mid", "high"])[np.digitize(X[:, 0], [-0.5, 0.5])]
    classifier = RandomForestClassifier(30, oob_score=True, random_state=0).fit(X, labels)
    everyone = np.ones(300, dtype=bool)
    own = classifier.classes_[np.argmax(classifier.oob_decision_function_, axis=1)]
    assert np.array_equal(out_of_bag_predictions(classifier, X, everyone), own)
    regressor = RandomForestRegressor(30, oob_score=True, random_state=0).fit(X, X[:, 0] * 2)
    assert np.allclose(out_of_bag_predictions(regressor, X, everyone), regressor.oob_prediction_)


def test_a_model_that_cannot_be_judged_out_of_bag_is_judged_by_folds():
    """No bootstrap samples, or too few trees to leave every judged row out of one: the folds."""
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(7)
    X, y = rng.normal(size=(200, 2)), rng.integers(0, 2, 200)
    fold = folds_of(200, unseen_from=0, seed=1)
    for forest in (lambda: RandomForestClassifier(30, bootstrap=False), lambda: RandomForestClassifier(2)):
        fit, calls = counting(lambda X, y, forest=forest: forest().fit(X, y))
        _, predictions = cross_fit(fit, X, y, fold)
        assert len(calls) == 1 + FOLDS and predictions.shape == (200,)
