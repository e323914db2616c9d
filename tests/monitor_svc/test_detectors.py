"""The detectors on deterministic synthetic streams (fixed seeds): each finds the change it is
built for, stays quiet on the null stream within its budget, and says what it saw."""

from __future__ import annotations

import numpy as np
import pytest

from mlaas.scenarios import covariate_streams, sea_error_streams
from monitor_svc.detectors.error_rate import ErrorRateDetector
from monitor_svc.detectors.scan import CATEGORICAL, NUMERIC, DriftScan, calibrate
from monitor_svc.retraining import RetrainTrigger, judge

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


def test_the_trigger_waits_for_labels_and_cools_down():
    trigger = RetrainTrigger(min_labels=100, cooldown_labels=500)
    alarm = ErrorRateDetector(30_000).update(np.concatenate([np.zeros(400), np.ones(200)]))[0]
    assert trigger.on_alarm(alarm, 1_000)
    assert not trigger.on_alarm(alarm, 1_001)  # one pending at a time
    assert trigger.due(1_000 - alarm.window + 99) is None
    assert trigger.due(1_000 - alarm.window + 100) == 1_000 - alarm.window
    trigger.finished(1_100)
    assert not trigger.on_alarm(alarm, 1_500) and trigger.on_alarm(alarm, 1_600)


def test_the_challenger_must_win_by_the_margin():
    assert judge(0.80, 0.85, 0.01).roll_out
    verdict = judge(0.80, 0.805, 0.01)
    assert not verdict.roll_out and "does not beat champion 0.8000 by 1.0%" in verdict.reason
