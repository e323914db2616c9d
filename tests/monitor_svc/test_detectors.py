"""The detectors on deterministic synthetic streams (fixed seeds): each finds the change it is
built for, stays quiet on the null stream within its budget, and says what it saw."""

from __future__ import annotations

import numpy as np
import pytest

from mlaas.demos.scenarios import covariate_streams, sea_error_streams
from mlaas.retraining.rounds import holdout_split, judge
from mlaas.v1 import monitor_pb2 as M
from mlaas.v1 import types_pb2
from monitor_svc.detectors.error_rate import ErrorRateDetector
from monitor_svc.detectors.scan import CATEGORICAL, NUMERIC, DriftScan, calibrate
from monitor_svc.monitoring import default_policy
from monitor_svc.retraining import RetrainSchedule, Round

STREAMS = covariate_streams(3)
REFERENCE = STREAMS["reference_0"]


@pytest.fixture(scope="module")
def threshold_500() -> float:
    return calibrate(REFERENCE, [NUMERIC] * 5, 500)


def test_the_scan_finds_a_half_sd_shift_and_names_the_feature(threshold_500):
    names = ["a", "b", "c", "d", "e"]
    for seed in range(3):
        alarms = DriftScan(REFERENCE, threshold_500, names).update(STREAMS[f"shift_{seed}"])
        assert alarms, f"seed {seed}: missed"
        first = alarms[0]
        assert first.features == ("a",) and first.statistic == "mean-z"
        assert first.value > first.threshold == threshold_500 and 8 <= first.window <= 256
        assert first.sample < 400


def test_the_calibrated_budget_holds_on_a_long_null_stream(threshold_500):
    """ERT 500 means about 20 false alarms per 10,000 stationary samples: 30,000 samples give
    60 on average; anything from 35 to 90 is the budget working (Poisson spread)."""
    null = np.vstack([STREAMS[f"null_{seed}"] for seed in range(3)])
    alarms = DriftScan(REFERENCE, threshold_500).update(null)
    assert 35 <= len(alarms) <= 90
    strict = DriftScan.calibrated(REFERENCE, 20_000)
    assert strict.threshold > threshold_500 and len(strict.update(null)) <= 5


def test_feeding_in_batches_gives_the_same_alarms_as_at_once(threshold_500):
    stream = STREAMS["shift_1"]
    at_once = DriftScan(REFERENCE, threshold_500).update(stream)
    batched, scan = [], DriftScan(REFERENCE, threshold_500)
    for start in range(0, len(stream), 37):
        batched += scan.update(stream[start : start + 37])
    assert [a.sample for a in batched] == [a.sample for a in at_once]


def test_a_categorical_feature_drifts_by_chi_square():
    rng = np.random.default_rng(3)
    reference = np.column_stack([rng.normal(size=4000), rng.choice(3, size=4000, p=[0.6, 0.3, 0.1])])
    scan = DriftScan.calibrated(reference, 1000, ["x", "colour"], [NUMERIC, CATEGORICAL])
    stationary = np.column_stack([rng.normal(size=3000), rng.choice(3, size=3000, p=[0.6, 0.3, 0.1])])
    assert len(scan.update(stationary)) <= 10
    shifted = np.column_stack([rng.normal(size=1000), rng.choice(4, size=1000, p=[0.3, 0.3, 0.1, 0.3])])
    alarms = scan.update(shifted)  # a new category (3) appears and category 0 halves
    assert alarms and alarms[0].features == ("colour",) and alarms[0].statistic == "chi2"


def test_the_error_rate_detector_sees_the_sea_concept_change_and_not_the_null():
    streams = sea_error_streams(3)
    for seed in range(3):
        assert ErrorRateDetector(30_000).update(streams[f"sea_null_{seed}"]) == []
        alarms = ErrorRateDetector(30_000).update(streams[f"sea_drift_{seed}"])
        assert alarms and 2_000 < alarms[0].sample < 2_600, [a.sample for a in alarms]
        assert alarms[0].features == ("error_rate",) and alarms[0].window >= 32


def test_a_better_error_rate_is_no_alarm():
    rng = np.random.default_rng(0)
    improving = np.concatenate([rng.random(3000) < 0.3, rng.random(3000) < 0.05]).astype(float)
    assert ErrorRateDetector(30_000).update(improving) == []


def test_a_series_retrains_on_more_labels_after_a_win_until_its_last_round():
    schedule = RetrainSchedule(min_labels=100, quiet_labels=300)
    assert schedule.on_alarm(1_000, 1_050)
    assert not schedule.on_alarm(1_040, 1_060)  # one series at a time
    assert schedule.due(1_099) is None and schedule.due(1_100) == Round(1_000, 1_000, follow_up=False)
    assert schedule.due(1_500) is None  # a round is running
    schedule.finished(True, 1_120)  # it won: next on twice the labels since the same change
    # the new version learnt from the labels up to 1,100: only later ones may judge it
    assert schedule.due(1_199) is None and schedule.due(1_200) == Round(1_000, 1_100, follow_up=True)
    schedule.finished(True, 1_210)
    assert schedule.due(1_400) == Round(1_000, 1_200, follow_up=True)
    # it lost after wins: the served version stays, and the next round still comes on twice the
    # labels, judged on those the served version never saw
    schedule.finished(False, 1_420)
    assert schedule.due(1_799) is None and schedule.due(1_800) == Round(1_000, 1_200, follow_up=True)
    schedule.finished(False, 1_820)
    assert schedule.due(2_600) == Round(1_000, 1_200, follow_up=True)
    schedule.finished(True, 2_610)  # the fifth round was the last: quiet for 300 labels
    assert schedule.due(50_000) is None and schedule.change_start is None
    assert not schedule.on_alarm(2_700, 2_909) and schedule.on_alarm(2_700, 2_910)


def test_until_a_round_wins_it_is_tried_again_on_the_latest_labels():
    schedule = RetrainSchedule(min_labels=100, quiet_labels=300, max_rounds=3)
    schedule.on_alarm(0, 10)
    assert schedule.due(100) == Round(0, 0, follow_up=False)
    schedule.finished(False, 100)
    # 100 labels later, on the latest 100 (a gradual change was still moving)
    assert schedule.due(199) is None and schedule.due(200) == Round(100, 0, follow_up=False)
    schedule.finished(True, 200)  # a win: the next round is a follow-up on twice the labels
    assert schedule.due(299) is None and schedule.due(300) == Round(100, 200, follow_up=True)
    schedule.finished(True, 300)  # the third round was the last
    assert schedule.due(10_000) is None and schedule.change_start is None


def test_an_early_first_round_that_loses_is_followed_by_the_usual_one_on_the_same_change():
    schedule = RetrainSchedule(min_labels=500, quiet_labels=300, first_labels=200)
    assert schedule.on_alarm(1_000, 1_010)
    assert schedule.due(1_199) is None and schedule.due(1_200) == Round(1_000, 1_000, follow_up=False)
    schedule.finished(False, 1_200)  # not convinced on its few labels
    assert schedule.due(1_499) is None and schedule.due(1_500) == Round(1_000, 1_000, follow_up=False)
    schedule.finished(True, 1_500)  # then the series goes on as ever: twice the labels
    assert schedule.due(1_999) is None and schedule.due(2_000) == Round(1_000, 1_500, follow_up=True)
    assert schedule.rounds == 2  # the early round that lost does not count against max_rounds


def test_an_alarm_that_comes_late_has_no_early_round():
    schedule = RetrainSchedule(min_labels=500, first_labels=200)
    schedule.on_alarm(1_000, 1_600)  # the change it dates is 600 labels back
    assert schedule.due(1_600) == Round(1_000, 1_000, follow_up=False)
    schedule.finished(False, 1_600)  # a usual round's loss: tried again 500 labels later, on the latest
    assert schedule.due(2_099) is None and schedule.due(2_100) == Round(1_600, 1_000, follow_up=False)


def test_an_early_first_round_that_wins_is_followed_as_a_series_without_it():
    schedule = RetrainSchedule(min_labels=500, first_labels=200)
    schedule.on_alarm(0, 10)
    assert schedule.due(200) == Round(0, 0, follow_up=False)
    schedule.finished(True, 200)
    assert schedule.due(499) is None and schedule.due(500) == Round(0, 200, follow_up=True)
    schedule.finished(True, 500)
    assert schedule.due(999) is None and schedule.due(1_000) == Round(0, 500, follow_up=True)


def test_private_and_federated_series_have_no_early_round():
    policy = default_policy()
    assert RetrainSchedule.for_policy(policy).first_labels == 200
    for field, value in (("privacy_epsilon", 1.0), ("federation", "sites")):
        private = M.MonitorPolicy()
        private.CopyFrom(policy)
        setattr(private, field, value)
        schedule = RetrainSchedule.for_policy(private)
        schedule.on_alarm(0, 0)
        assert schedule.due(499) is None and schedule.due(500) is not None


def test_a_series_stops_after_its_last_round():
    schedule = RetrainSchedule(min_labels=10, max_rounds=3)
    schedule.on_alarm(0, 0)
    for size in (10, 20, 40):
        assert schedule.due(size).since == 0
        schedule.finished(True, size)
    assert schedule.due(10_000) is None and schedule.change_start is None


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
