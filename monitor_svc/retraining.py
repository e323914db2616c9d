"""Retraining decisions and steps, free of service code (the Monitor and bench/ both use them).

A retraining starts on confirmed drift: a performance-drift alarm, i.e. labels show the model
got worse (a covariate shift that does not hurt accuracy is reported, not acted on). The
alarm's window dates the change; once `min_labels` labeled samples have arrived since then,
the registered recipe is trained on them (a scikit-learn pipeline from the allowlist, never
user code), the challenger and the champion are scored on a held-out part of the same recent
labels, and the challenger is rolled out only if it beats the champion by `min_improvement`
(relative); what is rolled out is then fitted on all the recent labels, held-out part
included. A cool-down, counted in labeled samples, keeps one drift from causing a storm of
retrainings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlaas.recipes import build_pipeline
from mlaas.v1 import types_pb2
from monitor_svc.detectors import Alarm


@dataclass
class RetrainTrigger:
    """Counts in labeled samples (the order labels arrived in)."""

    min_labels: int = 500
    cooldown_labels: int = 2_000
    change_start: int | None = None  # a pending retraining: labels from here on are "after"
    cooling_until: int = 0

    def on_alarm(self, alarm: Alarm, labels_seen: int) -> bool:
        """Records a performance alarm; False when one is pending already or it is cooling down."""
        if self.change_start is not None or labels_seen < self.cooling_until:
            return False
        self.change_start = max(labels_seen - alarm.window, 0)
        return True

    def due(self, labels_seen: int) -> int | None:
        """The first labeled sample after the change, once enough labels followed it."""
        if self.change_start is not None and labels_seen - self.change_start >= self.min_labels:
            return self.change_start
        return None

    def finished(self, labels_seen: int) -> None:
        self.change_start = None
        self.cooling_until = labels_seen + self.cooldown_labels


def holdout_split(n: int, fraction: float = 0.25, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) indices; the held-out part is a random `fraction` of the samples."""
    order = np.random.default_rng(seed).permutation(n)
    held = max(1, round(n * fraction))
    return np.sort(order[held:]), np.sort(order[:held])


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
    reason: str


def judge(champion: float, challenger: float, min_improvement: float) -> Verdict:
    """Roll out only when the challenger is better by the relative margin."""
    needed = champion + abs(champion) * min_improvement
    if challenger > needed:
        return Verdict(True, champion, challenger, f"challenger {challenger:.4f} beats champion {champion:.4f}")
    return Verdict(
        False, champion, challenger,
        f"challenger {challenger:.4f} does not beat champion {champion:.4f} by {min_improvement:.1%}",
    )  # fmt: skip
