"""The covariate drift scan on deterministic synthetic streams (fixed seeds): it finds a shift
and names the feature, stays quiet on the null stream within its budget, and gives the same
alarms however the stream is batched."""

from __future__ import annotations

import multiprocessing
import threading
import time
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor

import numpy as np
import pytest

from mlaas.demos.scenarios import covariate_streams
from monitor_svc.detectors.scan import CATEGORICAL, NUMERIC, DriftScan, calibrate
from monitor_svc.detectors.slots import FairSlots

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
    known; past BACKLOG_VALUES waiting values the oldest are counted and never scanned (a flood
    of feedback must neither fill the Monitor's memory nor hold its threads)."""
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
    assert full.update(shift[:200]) == [] and full.update(shift[200:]) == []  # never waits
    assert full.waiting == 300 and full.samples == len(shift) - 300  # the oldest go unscanned
    calibration.set_result(threshold_500)
    assert all(alarm.sample > len(shift) - 300 for alarm in full.update(shift[:0]))


def test_no_calibration_waits_behind_another_tenants(monkeypatch):
    """One tenant's wide model or strict policy calibrates for minutes: another's new version is
    calibrated meanwhile, not after it."""
    from monitor_svc.detectors import scan

    gate = threading.Event()

    def calibrated(reference, *_, cancelled):
        if len(reference) == 999:
            assert gate.wait(60), "the test let the slow one go on"
        return float(len(reference))

    thresholds = scan.Thresholds(calibrator=calibrated)
    slow = thresholds.future(np.zeros((999, 2)), [NUMERIC] * 2, 500, scan.WINDOWS, 0, owner="bob")
    fast = thresholds.future(np.zeros((10, 2)), [NUMERIC] * 2, 500, scan.WINDOWS, 0, owner="alice")
    assert fast.result(timeout=30) == 10.0
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


def test_a_failed_calibration_is_tried_again_and_then_reported_without_failing_feedback(threshold_500, monkeypatch):
    """A calibration child killed (out of memory, an operator): the scan asks again; after
    CALIBRATION_ATTEMPTS failures it says why it tests nothing, keeps no rows, and its feedback
    goes on (the predictions behind it are stored, the labels matched)."""
    from monitor_svc.detectors import scan

    outcomes = [RuntimeError("the calibration process ended without a threshold"), threshold_500]

    def flaky(*_, cancelled):
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    monkeypatch.setattr(scan, "THRESHOLDS", scan.Thresholds(calibrator=flaky))
    shift = STREAMS["shift_0"]
    recovered = DriftScan.calibrating(REFERENCE, 500)
    ended = threading.Event()
    recovered.when_calibrated(ended.set)
    assert ended.wait(30)
    deadline = time.monotonic() + 30
    while recovered.calibration is not None and time.monotonic() < deadline:
        recovered.update(shift[:0])  # meets the failure, asks again, then takes the second's threshold
        time.sleep(0.05)
    assert recovered.threshold == threshold_500 and not recovered.unavailable
    assert recovered.update(shift) == DriftScan(REFERENCE, threshold_500).update(shift)

    def dying(*_, cancelled):
        raise RuntimeError("the calibration process ended without a threshold")

    monkeypatch.setattr(scan, "THRESHOLDS", scan.Thresholds(calibrator=dying))
    broken = DriftScan.calibrating(REFERENCE, 500)
    deadline = time.monotonic() + 30
    while not broken.unavailable and time.monotonic() < deadline:
        assert broken.update(shift[:50]) == []
        time.sleep(0.05)
    assert "could not be calibrated (3 attempts" in broken.unavailable
    assert broken.update(shift) == [] and broken.waiting == 0 and broken.samples >= len(shift)


def test_a_scan_made_right_after_another_was_closed_gets_a_calibration_that_runs(threshold_500, monkeypatch):
    """A policy change rebuilds a deployment's monitor: the old scans forget the calibration and
    the new ones ask for the same threshold at once. They must get a calibration that runs, not
    the one being stopped (which left drift detection off for good)."""
    from monitor_svc.detectors import scan

    started = threading.Semaphore(0)

    def slow(*_, cancelled):  # notices a stop late, as a child's poll does
        started.release()
        time.sleep(0.5)
        if cancelled.is_set():
            raise CancelledError
        return threshold_500

    monkeypatch.setattr(scan, "THRESHOLDS", scan.Thresholds(calibrator=slow))
    old = DriftScan.calibrating(REFERENCE, 500)
    assert started.acquire(timeout=30)
    old.close()
    new = DriftScan.calibrating(REFERENCE, 500)
    assert new.calibration is not None and new.calibration is not old.calibration
    assert new.calibration.result(timeout=30) == threshold_500
    shift = STREAMS["shift_0"]
    assert new.update(shift) == DriftScan(REFERENCE, threshold_500).update(shift)


def test_calibration_children_are_bounded_and_each_tenant_takes_its_turn():
    """A tenant that deploys wide models in a loop starts no more calibrations at once than the
    bound, one of its own at a time, and another tenant's is next when a slot frees."""
    from monitor_svc.detectors import scan

    release = {owner: threading.Event() for owner in ("bob", "alice")}
    running: list[str] = []
    seen_at_once: list[list[str]] = []
    lock = threading.Lock()

    def calibrator(reference, *_, cancelled):
        owner = "bob" if reference.shape[1] == 2 else "alice"
        with lock:
            running.append(owner)
            seen_at_once.append(sorted(running))
        release[owner].wait(60)
        with lock:
            running.remove(owner)
        return float(reference.shape[0])

    thresholds = scan.Thresholds(calibrator=calibrator, slots=FairSlots(total=2))
    bobs = [thresholds.future(np.zeros((n, 2)), [NUMERIC] * 2, 500, scan.WINDOWS, 0, owner="bob") for n in range(1, 6)]
    alices = thresholds.future(np.zeros((7, 3)), [NUMERIC] * 3, 500, scan.WINDOWS, 0, owner="alice")
    release["alice"].set()  # bob's stay blocked: alice's must not wait behind them
    assert alices.result(timeout=30) == 7.0
    release["bob"].set()
    assert [f.result(timeout=30) for f in bobs] == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert all(len(at_once) <= 2 and at_once.count("bob") <= 1 for at_once in seen_at_once), seen_at_once


def test_fair_slots_give_a_free_slot_to_the_owner_served_least_recently():
    slots = FairSlots(total=1)
    never = threading.Event()
    assert slots.acquire("bob", never)
    order: list[str] = []

    def wait_for(owner: str) -> None:
        assert slots.acquire(owner, never)
        order.append(owner)
        slots.release(owner)

    waiters = []
    for owner in ("bob", "bob", "alice"):  # bob's second request queued before alice's first
        waiters.append(threading.Thread(target=wait_for, args=(owner,)))
        waiters[-1].start()
        while len(slots._waiting) < len(waiters):  # queued in this order
            threading.Event().wait(0.01)
    slots.release("bob")
    for waiter in waiters:
        waiter.join(30)
    assert order[0] == "alice" and sorted(order) == ["alice", "bob", "bob"]
    cancelled = threading.Event()
    assert slots.acquire("carol", never)
    cancelled.set()
    assert not slots.acquire("dave", cancelled) and slots.running == 1
