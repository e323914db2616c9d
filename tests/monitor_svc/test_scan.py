"""The covariate drift scan on deterministic synthetic streams (fixed seeds): it finds a shift
and names the feature, stays quiet on the null stream within its budget, and gives the same
alarms however the stream is batched."""

from __future__ import annotations

import multiprocessing
import threading
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor

import numpy as np
import pytest

from mlaas.demos.scenarios import covariate_streams
from monitor_svc.detectors.scan import CATEGORICAL, NUMERIC, DriftScan, calibrate

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
    strict = DriftScan.calibrating(REFERENCE, 20_000, wait=True)
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
    scan = DriftScan.calibrating(reference, 1000, ["x", "colour"], [NUMERIC, CATEGORICAL], wait=True)
    stationary = np.column_stack([rng.normal(size=3000), rng.choice(3, size=3000, p=[0.6, 0.3, 0.1])])
    assert len(scan.update(stationary)) <= 10
    shifted = np.column_stack([rng.normal(size=1000), rng.choice(4, size=1000, p=[0.3, 0.3, 0.1, 0.3])])
    alarms = scan.update(shifted)  # a new category (3) appears and category 0 halves
    assert alarms and alarms[0].features == ("colour",) and alarms[0].statistic == "chi2"


def test_a_threshold_is_calibrated_once_for_its_inputs_whoever_asks_at_once(monkeypatch):
    """Calibration simulates hundreds of thousands of samples: every deployment of a model
    version, and each of its replicas' first feedback, recalibrated it, and on a busy Monitor
    feedback waited past its deadline."""
    from monitor_svc.detectors import scan

    calls = []

    def counted(*args, cancelled):
        calls.append(args)
        return calibrate(*args)

    thresholds = scan.Thresholds(calibrator=counted)
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda _: thresholds.get(REFERENCE, [NUMERIC] * 5, 500, scan.WINDOWS, 0), range(4)))
    assert len(calls) == 1 and got == [calibrate(REFERENCE, [NUMERIC] * 5, 500)] * 4
    assert thresholds.get(REFERENCE.copy(), [NUMERIC] * 5, 500, scan.WINDOWS, 0) == got[0] and len(calls) == 1
    other = thresholds.get(REFERENCE[:-1], [NUMERIC] * 5, 500, scan.WINDOWS, 0)  # one row fewer: its own
    stricter = thresholds.get(REFERENCE, [NUMERIC] * 5, 5000, scan.WINDOWS, 0)
    assert len(calls) == 3 and other != got[0] and stricter > got[0]


def test_rows_fed_while_the_scan_is_calibrated_wait_and_keep_their_sample_numbers(threshold_500, monkeypatch):
    """A rollout's first feedback does not wait seconds for the new version's calibration: its
    rows wait in the scan, which finds the same alarms at the same samples once its threshold is
    known; past BACKLOG_VALUES waiting values, feeding waits for the threshold."""
    from monitor_svc.detectors import scan

    shift = STREAMS["shift_0"]
    known = DriftScan(REFERENCE, threshold_500).update(shift)
    calibration: Future[float] = Future()
    waiting = DriftScan(REFERENCE, calibration)
    assert waiting.update(shift[:150]) == [] and waiting.update(shift[150:]) == []
    assert waiting.waiting == len(shift) and waiting.samples == 0
    calibration.set_result(threshold_500)
    assert waiting.update(shift[:0]) == known and waiting.calibration is None and waiting.waiting == 0

    monkeypatch.setattr(scan, "BACKLOG_VALUES", 300 * 5)  # 300 rows of 5 features
    calibration = Future()
    full = DriftScan(REFERENCE, calibration)
    assert full.update(shift[:200]) == []
    threading.Timer(0.2, calibration.set_result, (threshold_500,)).start()
    assert full.update(shift[200:]) == known  # waited for the threshold


def test_no_calibration_waits_behind_another(monkeypatch):
    """One tenant's wide model or strict policy calibrates for minutes: another's new version is
    calibrated meanwhile, not after it."""
    from monitor_svc.detectors import scan

    gate = threading.Event()

    def calibrated(reference, *_, cancelled):
        if len(reference) == 999:
            assert gate.wait(60), "the test let the slow one go on"
        return float(len(reference))

    thresholds = scan.Thresholds(calibrator=calibrated)
    slow = thresholds.future(np.zeros((999, 2)), [NUMERIC] * 2, 500, scan.WINDOWS, 0)
    assert thresholds.future(np.zeros((10, 2)), [NUMERIC] * 2, 500, scan.WINDOWS, 0).result(timeout=30) == 10.0
    assert not slow.done()
    gate.set()
    assert slow.result(timeout=30) == 999.0


def test_a_threshold_is_calibrated_in_a_child_process_as_here_and_its_failure_comes_back(threshold_500):
    """Seconds of simulation run in a child of their own, not on a thread that holds the
    Monitor's interpreter lock; the threshold is the same, and so is an error."""
    from monitor_svc.detectors.scan import calibrate_in_child

    assert calibrate_in_child(REFERENCE, [NUMERIC] * 5, 500) == threshold_500
    with pytest.raises(ValueError):  # no reference row to bootstrap from
        calibrate_in_child(REFERENCE[:0], [NUMERIC] * 5, 500)


def test_a_calibration_no_scan_waits_for_stops_and_is_done_again_when_asked():
    """A fast series of rollouts replaces each version within seconds: the calibrations of the
    replaced ones stop, the one still wanted goes on (the Monitor spent seconds of CPU on each)."""
    from monitor_svc.detectors import scan

    stopped = []

    def until_cancelled(reference, *_, cancelled):
        if not cancelled.wait(60):
            return 5.0
        stopped.append(len(reference))
        raise CancelledError

    thresholds = scan.Thresholds(calibrator=until_cancelled)
    first = thresholds.future(REFERENCE, [NUMERIC] * 5, 500, scan.WINDOWS, 0)
    second = thresholds.future(REFERENCE, [NUMERIC] * 5, 500, scan.WINDOWS, 0)  # another scan, the same inputs
    assert first is second
    thresholds.forget(first)
    assert not first.done()  # the other scan still waits for it
    thresholds.forget(second)
    with pytest.raises(CancelledError):
        first.result(timeout=30)
    assert stopped == [len(REFERENCE)]
    again = thresholds.future(REFERENCE, [NUMERIC] * 5, 500, scan.WINDOWS, 0)
    assert again is not first and not again.done()
    thresholds.forget(again)


def test_a_scan_closed_twice_leaves_the_calibration_another_scan_waits_for(monkeypatch):
    """Deployments of one version share its calibration; one closing twice (replaced, then shut
    down) must not stop the other's."""
    from monitor_svc.detectors import scan as scans

    release = threading.Event()
    calibrator = lambda *_, cancelled: release.wait(60) and 5.0  # noqa: E731
    monkeypatch.setattr(scans, "THRESHOLDS", scans.Thresholds(calibrator=calibrator))
    replaced = DriftScan.calibrating(REFERENCE, 500)
    serving = DriftScan.calibrating(REFERENCE, 500)
    assert replaced.calibration is serving.calibration
    replaced.close()
    replaced.close()
    assert replaced.update(REFERENCE[:10]) == [] and replaced.waiting == 0  # a closed scan keeps no rows
    serving.update(REFERENCE[:10])
    release.set()
    assert serving.calibration is not None and serving.calibration.result(timeout=30) == 5.0
    serving.close()


ASKS_FOR_A_LONG_CALIBRATION = """
import multiprocessing, sys, threading
import numpy as np
from monitor_svc.detectors.scan import NUMERIC, calibrate_in_child
wide = np.random.default_rng(1).normal(size=(3_000, 30))
threading.Thread(target=calibrate_in_child, args=(wide, [NUMERIC] * 30, 200_000), daemon=True).start()
while not multiprocessing.active_children():
    threading.Event().wait(0.05)
print(multiprocessing.active_children()[0].pid, flush=True)
threading.Event().wait()
"""


def test_a_calibrations_child_ends_when_the_monitor_is_killed():
    """The operator's `kill -9` of a Monitor: its calibration children (forked by the fork server,
    not by it) must not run on for minutes with hundreds of megabytes each."""
    import subprocess
    import sys
    import time

    import psutil

    monitor = subprocess.Popen([sys.executable, "-c", ASKS_FOR_A_LONG_CALIBRATION], stdout=subprocess.PIPE, text=True)
    try:
        assert monitor.stdout is not None
        child = psutil.Process(int(monitor.stdout.readline()))
        assert child.is_running() and child.status() != psutil.STATUS_ZOMBIE
    finally:
        monitor.kill()
        monitor.wait()
    deadline = time.monotonic() + 20  # a calibration of this size runs for a minute or more
    while child.is_running() and child.status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE


def test_a_stopped_calibrations_child_is_killed_and_its_scan_takes_rows_without_failing():
    from monitor_svc.detectors.scan import calibrate_in_child

    cancelled = threading.Event()
    wide = np.random.default_rng(1).normal(size=(3_000, 30))  # a simulation of a minute, here
    threading.Timer(0.5, cancelled.set).start()
    with pytest.raises(CancelledError):
        calibrate_in_child(wide, [NUMERIC] * 30, 200_000, cancelled=cancelled)
    assert multiprocessing.active_children() == []  # killed and reaped
    stopped: Future[float] = Future()
    scan = DriftScan(REFERENCE, stopped)
    stopped.cancel()
    assert scan.update(REFERENCE[:10]) == [] and scan.waiting == 0
