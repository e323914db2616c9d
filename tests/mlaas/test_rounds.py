"""A round's statistics: the paired test that decides whether a challenger rolls out, and the
held-out labels it is judged on."""

from __future__ import annotations

import numpy as np

from mlaas.retraining.rounds import holdout_split, judge
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
    # a follow-up round (more labels of the same concept) needs only to be as good
    assert judge(types_pb2.TASK_CLASSIFICATION, truth, champion, barely, 0.95, follow_up=True).roll_out
    worse = judge(types_pb2.TASK_CLASSIFICATION, truth, barely, champion, 0.95, follow_up=True)
    assert not worse.roll_out and "worse; the served version stays" in worse.reason


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
