"""Retraining decisions and steps, free of service code (the Monitor and bench/ both use them).

A retraining starts on confirmed drift: a performance-drift alarm, i.e. labels show the model
got worse (a covariate shift that does not hurt accuracy is reported, not acted on). The
alarm's window dates the change; once `min_labels` labeled samples have arrived since then,
the registered recipe is trained on the labels since the change (a scikit-learn pipeline from
the allowlist, never user code), the challenger and the champion are scored on a held-out part
of them, and the challenger is rolled out only if a paired test on that part says it is better
at the policy's confidence; what is rolled out is then fitted on all of them, held-out part
included. A winning challenger is followed by another round on twice the labels since the same
change (RetrainSchedule), so the served model learns more of the new concept as its labels
accumulate; a series ends when a challenger stops winning.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest, wilcoxon

from mlaas.recipes import build_pipeline
from mlaas.v1 import types_pb2


@dataclass(frozen=True)
class Round:
    """A retraining due: it learns from the labels after `since`; the champion never saw those
    after `unseen_after`, so only they may judge it."""

    since: int
    unseen_after: int
    follow_up: bool  # the serving version came from an earlier round of the same series


@dataclass
class RetrainSchedule:
    """When to retrain one deployment, in matched-label numbers (the order labels arrived in,
    across model versions).

    A performance alarm dates a change and starts a series: once `min_labels` labels followed
    the change, round 1 fits the labels since it. Each round whose challenger wins is followed
    by one on twice as many labels since the same change (abrupt change: the more of the new
    concept, the better). Until a round has won, a loss is tried again `min_labels` labels later
    on the latest labels only (gradual change: the concept was still moving). After a win, a loss
    ends the series; so does `max_rounds`. Once a series ended, an alarm may start a new one
    after `quiet_labels` more labels (the new version's own detector needs them to settle).
    """

    min_labels: int = 500
    quiet_labels: int = 500
    max_rounds: int = 5
    change_start: int | None = None  # the labels of the series start after this one
    size: int = 0  # labels since the change the next round waits for
    rounds: int = 0
    wins: int = 0
    running: bool = False  # a round was submitted and its outcome is not known yet
    quiet_until: int = 0
    unseen_after: int = 0  # the serving model learnt from no label after this one
    _due_at: int = 0

    def on_alarm(self, change_start: int, labels_seen: int) -> bool:
        """A performance alarm dating a change; True when it starts a series."""
        if self.change_start is not None or labels_seen < self.quiet_until:
            return False
        self.change_start, self.size, self.rounds, self.wins = change_start, self.min_labels, 0, 0
        self.unseen_after = change_start  # the serving model knows nothing of the new concept
        return True

    def due(self, labels_seen: int) -> Round | None:
        """The round due now (it is then counted as running), else None."""
        if self.change_start is None or self.running or labels_seen - self.change_start < self.size:
            return None
        self.running, self.rounds, self._due_at = True, self.rounds + 1, labels_seen
        return Round(self.change_start, self.unseen_after, follow_up=self.wins > 0)

    def finished(self, rolled_out: bool, labels_seen: int) -> None:
        """The outcome of the running round."""
        self.running = False
        self.wins += rolled_out
        if rolled_out:  # the new version learnt from every label up to the round's start
            self.unseen_after = self._due_at
        if self.rounds < self.max_rounds and rolled_out:
            self.size *= 2
            return
        if self.rounds < self.max_rounds and not self.wins:  # again, on the latest labels
            self.change_start = max(self.change_start, self._due_at - self.size + self.min_labels)
            return
        self.change_start = None
        self.quiet_until = labels_seen + self.quiet_labels


def holdout_split(n: int, fraction: float = 0.25, seed: int = 0, unseen_from: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) indices of n samples; the held-out part is a random `fraction` of them,
    drawn from those from `unseen_from` on (the champion learnt from those before: judged on them
    it would look better than it is)."""
    unseen_from = min(max(unseen_from, 0), n - 1)
    order = unseen_from + np.random.default_rng(seed).permutation(n - unseen_from)
    held = order[: max(1, min(round(n * fraction), order.size))]
    return np.setdiff1d(np.arange(n), held), np.sort(held)


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


def judge(
    task: int, y_true: np.ndarray, champion: np.ndarray, challenger: np.ndarray, confidence: float,
    follow_up: bool = False,
) -> Verdict:  # fmt: skip
    """Whether the challenger's predictions on held-out labels are better than the champion's,
    by a one-sided paired test at `confidence`: for classification McNemar's exact test (of the
    samples exactly one model gets right, the challenger must get significantly more than half),
    otherwise the Wilcoxon signed-rank test on the differences of absolute errors.

    A `follow_up` (the same recipe on more labels of the concept the champion was fitted on, a
    superset of its own) needs only to be at least as good: it has more data, and a few hundred
    held-out labels cannot show the smaller gains of a second or third round."""
    champion_score, challenger_score = score(task, y_true, champion), score(task, y_true, challenger)
    if task == types_pb2.TASK_CLASSIFICATION:
        truth = np.asarray(y_true).astype(str)
        champion_right = np.asarray(champion).astype(str) == truth
        challenger_right = np.asarray(challenger).astype(str) == truth
        wins, losses = int(np.sum(challenger_right & ~champion_right)), int(np.sum(champion_right & ~challenger_right))
        p_value = binomtest(wins, wins + losses, 0.5, alternative="greater").pvalue if wins + losses else 1.0
    else:
        truth = np.asarray(y_true, dtype=float)
        gain = np.abs(truth - np.asarray(champion, dtype=float)) - np.abs(truth - np.asarray(challenger, dtype=float))
        p_value = wilcoxon(gain, alternative="greater").pvalue if np.any(gain != 0) else 1.0
    p_value = float(p_value)
    scores = f"challenger {challenger_score:.4f}, champion {champion_score:.4f} on {len(truth)} held-out labels"
    if follow_up:
        if challenger_score >= champion_score:
            return Verdict(
                True, champion_score, challenger_score, p_value, f"{scores}: as good or better, on more labels"
            )
        return Verdict(False, champion_score, challenger_score, p_value, f"{scores}: worse; the series ends")
    if p_value < 1.0 - confidence:
        return Verdict(True, champion_score, challenger_score, p_value, f"{scores}: better (p={p_value:.2g})")
    return Verdict(
        False, champion_score, challenger_score, p_value,
        f"{scores}: not better at {confidence:.0%} confidence (p={p_value:.2g})",
    )  # fmt: skip
