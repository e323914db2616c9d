"""One retraining round's steps on labeled data, wherever the data is: in the Monitor (OPEN
deployments, whose labels it keeps) or on a STRICT deployment's node (the on-node training job,
mlaas/retraining/train_job.py, whose rows never leave it).

A round fits the registered recipe on the labels since a change and judges the challenger
against the serving version (the champion) with a one-sided paired test (`judge`) on labels the
champion never learnt from, each predicted by a fit that did not learn from it either:

- cross-validated (`cross_validated_round`): the model that rolls out is fitted on all rows,
  and every label the champion never saw judges, about four times the held-out part's, so a
  first round on few labels after a change can already convince the test. Each is predicted by
  the trees whose bootstrap samples left it out if the recipe ends in a random forest (no fit
  more: Breiman's out-of-bag estimate), else it is in one of FOLDS folds and predicted by a fit
  on the other rows (FOLDS fits more).
- held out (`held_out_round`): a random quarter of those labels is kept out of the fit. For rounds
  whose every fit costs privacy budget (one fit, judged once).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlaas.recipes import build_pipeline
from mlaas.retraining.outcomes import paired_gain
from mlaas.v1 import scheduler_pb2, types_pb2

HELD_OUT = "held-out recent"  # the dataset a round's scores are on
FOLDS = 4  # of a cross-validated round: each judging fit learns from 3/4 of the labels it may judge on


def first_output(artifact: Path | bytes, rows: np.ndarray) -> np.ndarray:
    """The model's (a file's or ONNX bytes') first output on `rows`, one value per row."""
    import onnxruntime

    model = artifact if isinstance(artifact, bytes) else str(artifact)
    session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
    feed = session.get_inputs()[0]
    dtype = np.float64 if "double" in feed.type else np.float32
    output = session.run([session.get_outputs()[0].name], {feed.name: rows.astype(dtype)})[0]
    return np.asarray(output).reshape(rows.shape[0], -1)[:, 0]


def holdout_split(n: int, fraction: float = 0.25, seed: int = 0, unseen_from: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) indices of n samples; the held-out part is a random `fraction` of them,
    drawn from those from `unseen_from` on (the champion learnt from those before: judged on them
    it would look better than it is)."""
    unseen_from = min(max(unseen_from, 0), n - 1)
    order = unseen_from + np.random.default_rng(seed).permutation(n - unseen_from)
    held = order[: max(1, min(round(n * fraction), order.size))]
    return np.setdiff1d(np.arange(n), held), np.sort(held)


def folds_of(n: int, unseen_from: int, folds: int = FOLDS, seed: int = 0) -> np.ndarray:
    """Per row of n, the fold whose fit leaves it out and predicts it: the rows from `unseen_from`
    on (the champion never learnt from them; the last row at least, as in `holdout_split`) dealt
    at random into `folds` folds; -1 for the rows before, which every fit learns from and none
    judges."""
    unseen_from = min(max(unseen_from, 0), n - 1)
    fold = np.full(n, -1, dtype=np.int64)
    fold[unseen_from:] = np.random.default_rng(seed).permutation(n - unseen_from) % folds
    return fold


def cross_fit(
    fit: Callable[[np.ndarray, np.ndarray], Any], X: np.ndarray, y: np.ndarray, fold: np.ndarray,
    out_of_bag: bool = True,
):  # fmt: skip
    """(the model `fit` on all rows, the predictions for the rows with a fold, in row order), each
    prediction by fits that never learnt its label: a bagged forest's trees whose samples left
    the row out (`out_of_bag_predictions`, no fit more), else the fit on the rows outside its
    fold."""
    model = fit(X, y)
    judged = fold[fold >= 0]
    if out_of_bag and (predictions := out_of_bag_predictions(model, X, fold >= 0)) is not None:
        return model, predictions
    found = {k: np.asarray(fit(X[fold != k], y[fold != k]).predict(X[fold == k])) for k in np.unique(judged)}
    predictions = np.empty(judged.size, dtype=np.result_type(*found.values()))  # a regressor's floats stay floats
    for k, predicted in found.items():
        predictions[judged == k] = predicted
    return model, predictions


def out_of_bag_predictions(model: Any, X: np.ndarray, judged: np.ndarray) -> np.ndarray | None:
    """The `judged` rows (a mask) of the model's training rows X, each predicted by the trees of
    its final bagged forest whose bootstrap samples left it out; None unless the model ends in
    such a forest and every judged row has such trees. The steps before the forest (scalers,
    PCA) learnt from the rows' features, never from their labels."""
    steps = [step for _, step in model.steps] if hasattr(model, "steps") else [model]
    forest = steps[-1]
    samples = getattr(forest, "estimators_samples_", None)
    if samples is None or not getattr(forest, "bootstrap", False):
        return None
    rows = X[judged]
    for step in steps[:-1]:
        rows = step.transform(rows)
    index = np.flatnonzero(judged)
    votes, trees = None, np.zeros(index.size)
    for tree, sampled in zip(forest.estimators_, samples, strict=True):
        left_out = ~np.isin(index, sampled)
        if not left_out.any():
            continue
        predicted = tree.predict_proba(rows[left_out]) if hasattr(forest, "classes_") else tree.predict(rows[left_out])
        if votes is None:
            votes = np.zeros((index.size, *predicted.shape[1:]))
        votes[left_out] += predicted
        trees[left_out] += 1
    if votes is None or not trees.all():
        return None
    if hasattr(forest, "classes_"):
        return forest.classes_[np.argmax(votes, axis=1)]
    return votes / trees


def train(recipe: types_pb2.TrainingRecipe, X: np.ndarray, y: np.ndarray):
    return build_pipeline(recipe).fit(X, y)


def score(task: int, y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Higher is better: accuracy for classification, minus the mean absolute error otherwise."""
    if task == types_pb2.TASK_CLASSIFICATION:
        return float(np.mean(np.asarray(y_true).astype(str) == np.asarray(y_pred).astype(str)))
    return -float(np.mean(np.abs(np.asarray(y_true, dtype=float) - np.asarray(y_pred, dtype=float))))


def metric_name(task: int) -> str:
    return "accuracy" if task == types_pb2.TASK_CLASSIFICATION else "neg_mae"


@dataclass(frozen=True)
class Verdict:
    roll_out: bool
    champion: float
    challenger: float
    p_value: float
    reason: str
    wins: int = 0  # held-out samples the challenger did better on than the champion
    losses: int = 0  # and worse


def judge(
    task: int, y_true: np.ndarray, champion: np.ndarray, challenger: np.ndarray, confidence: float,
    follow_up: bool = False, cross_validated: bool = False,
) -> Verdict:  # fmt: skip
    """Whether the challenger's predictions on held-out labels (`cross_validated`: each predicted
    by fits that never learnt it, see cross_fit) are better than the champion's,
    by a one-sided paired test at `confidence`: for classification McNemar's exact test (of the
    samples exactly one model gets right, the challenger must get significantly more than half),
    otherwise the Wilcoxon signed-rank test on the differences of absolute errors.

    A `follow_up` (the same recipe on more labels of the concept the champion was fitted on, a
    superset of its own) rolls out unless the same test shows it worse: it has more data, a few
    hundred held-out labels cannot show the smaller gains of a second or third round, and a
    forest's out-of-bag votes (a third of its trees) understate it beside the whole champion."""
    champion_score, challenger_score = score(task, y_true, champion), score(task, y_true, challenger)
    classification = task == types_pb2.TASK_CLASSIFICATION
    gain = paired_gain(classification, y_true, champion, challenger)
    wins, losses = int(np.sum(gain > 0)), int(np.sum(gain < 0))
    if classification:
        p_value, p_worse = mcnemar(wins, losses), mcnemar(losses, wins)
    else:
        from scipy.stats import wilcoxon  # here: a starting Monitor need not import scipy.stats (0.6 s)

        changed = np.any(gain != 0)
        p_value = float(wilcoxon(gain, alternative="greater").pvalue) if changed else 1.0
        p_worse = float(wilcoxon(gain, alternative="less").pvalue) if changed else 1.0
    return decide(
        champion_score, challenger_score, len(gain), p_value, confidence, follow_up, wins, losses, cross_validated,
        p_worse,
    )  # fmt: skip


def mcnemar(wins: int, losses: int) -> float:
    """One-sided p-value of McNemar's exact test: of the samples exactly one model got right,
    does the challenger get more than half?"""
    from scipy.stats import binomtest  # see judge

    return float(binomtest(wins, wins + losses, 0.5, alternative="greater").pvalue) if wins + losses else 1.0


def decide(
    champion: float, challenger: float, held_out: int, p_value: float, confidence: float, follow_up: bool,
    wins: int = 0, losses: int = 0, cross_validated: bool = False, p_worse: float | None = None,
) -> Verdict:  # fmt: skip
    """The verdict from the scores and the paired test's p-values that the challenger is better
    and (`p_worse`; by default from the counts) worse (see `judge`)."""
    how = " (cross-validated)" if cross_validated else ""
    scores = f"challenger {challenger:.4f}, champion {champion:.4f} on {held_out} held-out labels{how}"
    if follow_up:
        p_worse = mcnemar(losses, wins) if p_worse is None else p_worse
        better = p_worse >= 1.0 - confidence
        outcome = "not worse, on more labels" if better else "worse; the served version stays"
        reason = f"{scores}: {outcome} (p={p_worse:.2g} that it is worse)"
    elif p_value < 1.0 - confidence:
        better, reason = True, f"{scores}: better (p={p_value:.2g})"
    else:
        better, reason = False, f"{scores}: not better at {confidence:.0%} confidence (p={p_value:.2g})"
    return Verdict(better, champion, challenger, p_value, reason, wins, losses)


def round_result(task: int, verdict: Verdict, **counts) -> scheduler_pb2.RoundResult:
    """What a round reports (to the Monitor, from a node): the verdict's scores and counts, and
    `counts` (training_samples, held_out_samples, epsilon_spent)."""
    name = metric_name(task)
    return scheduler_pb2.RoundResult(
        champion=types_pb2.Metric(name=name, value=verdict.champion, dataset=HELD_OUT),
        challenger=types_pb2.Metric(name=name, value=verdict.challenger, dataset=HELD_OUT),
        better=verdict.roll_out, reason=verdict.reason, wins=verdict.wins, losses=verdict.losses, **counts,
    )  # fmt: skip


@dataclass(frozen=True)
class RoundOutcome:
    verdict: Verdict
    model: bytes | None  # ONNX, what rolls out: only when the verdict says so
    training_samples: int  # the rolled-out model's (or, rejected, the challenger's)
    held_out_samples: int  # the labels judged on


def cross_validated_round(
    task: int, X: np.ndarray, y: np.ndarray, unseen_from: int, champion: Callable[[np.ndarray], np.ndarray],
    cross_fitted: Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[bytes, np.ndarray | None]], confidence: float,
    follow_up: bool, evaluating: Callable[[], None] = lambda: None,
) -> RoundOutcome:  # fmt: skip
    """One round on labeled rows (X, y), the champion having learnt from none from row
    `unseen_from` on: `cross_fitted(X, y, fold)` gives the challenger fitted on all rows (ONNX
    bytes) and the predictions of the fits that left each fold out (`cross_fit`), which are
    judged against `champion(rows)` (the serving version's answers) on those rows. `evaluating`
    is told when the fits are done."""
    fold = folds_of(len(y), unseen_from, seed=len(y))
    model, predictions = cross_fitted(X, y, fold)
    assert predictions is not None, "a fit given folds predicts them"
    evaluating()
    judged = fold >= 0
    verdict = judge(
        task, y[judged], champion(X[judged]).astype(y.dtype), np.asarray(predictions).astype(y.dtype), confidence,
        follow_up, cross_validated=True,
    )  # fmt: skip
    return RoundOutcome(verdict, model if verdict.roll_out else None, len(y), int(judged.sum()))


def held_out_round(
    task: int, X: np.ndarray, y: np.ndarray, unseen_from: int, champion: Callable[[np.ndarray], np.ndarray],
    fit: Callable[[np.ndarray, np.ndarray], bytes], confidence: float, follow_up: bool,
) -> RoundOutcome:  # fmt: skip
    """One round on labeled rows (X, y), the champion having learnt from none from row
    `unseen_from` on: `fit(X, y)` gives a challenger (ONNX bytes) fitted on most rows,
    `champion(rows)` the serving version's answers; both are judged on the held-out rest. A
    better challenger rolls out as it was fitted (for private rounds: a fit on all rows would
    spend the privacy budget again)."""
    fit_rows, held = holdout_split(len(y), seed=len(y), unseen_from=unseen_from)
    challenger = fit(X[fit_rows], y[fit_rows])
    # The champion as it serves now: the held-out rows may have been answered by an older
    # version (a second round of a series spans a rollout).
    champion_predictions = champion(X[held]).astype(y.dtype)
    challenger_predictions = first_output(challenger, X[held]).astype(y.dtype)
    verdict = judge(task, y[held], champion_predictions, challenger_predictions, confidence, follow_up)
    return RoundOutcome(verdict, challenger if verdict.roll_out else None, len(fit_rows), len(held))
