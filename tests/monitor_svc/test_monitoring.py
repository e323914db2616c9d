"""monitor_svc/monitoring.py's events and drift state, offline on Gaussian streams: a change
never hides behind an earlier drift (on another feature, or a false alarm on the same one), a
persisting shift shows drifted in the report for as long as it lasts, since its first alarm,
and the policy's false-alarm rate sets each detector's threshold."""

from __future__ import annotations

import itertools
import threading
import time

import numpy as np

from mlaas.client import RegistryClient, SchedulerClient
from mlaas.v1 import monitor_pb2, types_pb2
from monitor_svc.changes import Changes
from monitor_svc.monitoring import DeploymentMonitor, ModelContext, default_policy, detector_run_length
from monitor_svc.retrainer import Job, Retrainer
from monitor_svc.store import MonitorStore

M = monitor_pb2
FEATURES = ("a", "b", "c")


def monitor(seed: int = 0) -> tuple[DeploymentMonitor, np.random.Generator]:
    rng = np.random.default_rng(seed)
    reference = rng.normal(size=(2000, 3))
    context = ModelContext("m", 1, types_pb2.TASK_REGRESSION, FEATURES, reference, reference[:, 0].copy())
    deployment = DeploymentMonitor("d-1", context, default_policy(), strict=False)
    for scan in (deployment.data, deployment.prediction):  # these tests feed rows and expect their events at once
        if scan.calibration is not None:
            scan.calibration.result()
    return deployment, rng


def feed(deployment: DeploymentMonitor, rows: np.ndarray) -> list:
    return deployment.observe(rows, rows[:, 0])  # the model predicts feature a, as on the reference


def data_events(events: list) -> list:
    return [e for e in events if e.kind == M.DRIFT_KIND_DATA]


def test_a_shift_right_after_another_features_drift_is_its_own_event():
    """Feature a shifts for 150 rows, then back; 100 rows later b shifts for good. The second
    shift was absorbed by the first event before (all alarms of a kind within four windows of
    the last one continued it, and each extended the hold)."""
    deployment, rng = monitor()
    feed(deployment, rng.normal(size=(500, 3)))
    brief = rng.normal(size=(150, 3))
    brief[:, 0] += 3
    first = data_events(feed(deployment, brief))
    assert [tuple(e.features) for e in first] == [("a",)]
    feed(deployment, rng.normal(size=(100, 3)))
    shifted = rng.normal(size=(400, 3))
    shifted[:, 1] += 3
    second = data_events(feed(deployment, shifted))
    assert second and "b" in second[0].features and second[0].window_end_sample < 500 + 150 + 100 + 100


def test_a_real_shift_after_a_false_alarm_on_the_same_feature_is_at_most_a_hold_late():
    deployment, rng = monitor(1)
    feed(deployment, rng.normal(size=(500, 3)))
    blip = rng.normal(size=(40, 3))
    blip[:, 0] += 4  # a short excursion: one event
    assert len(data_events(feed(deployment, blip))) == 1
    shifted = rng.normal(size=(1500, 3))
    shifted[:, 0] += 1.5  # then a real shift of the same feature, for good
    later = data_events(feed(deployment, shifted))
    hold = 4 * 256
    assert later and later[0].window_end_sample <= 540 + hold + 300


def test_a_persisting_shift_is_drifted_in_the_report_since_its_first_alarm():
    deployment, rng = monitor(2)
    feed(deployment, rng.normal(size=(500, 3)))
    shifted = rng.normal(size=(3000, 3))
    shifted[:, 2] += 1.0
    events = data_events(feed(deployment, shifted))
    first_alarm = events[0].window_end_sample
    assert len(events) >= 2  # reminders while it lasts, a hold apart
    assert all(b.window_end_sample - a.window_end_sample > 4 * 256 for a, b in itertools.pairwise(events))
    for _ in range(5):  # whatever the restarted scan's value says between alarms
        more = rng.normal(size=(37, 3))
        more[:, 2] += 1.0
        feed(deployment, more)
        shown = {f.feature: f for f in deployment.report(0).features}
        assert shown["c"].drifted and shown["c"].first_seen_sample == first_alarm
        assert shown["c"].first_seen.seconds > 0 and not shown["a"].drifted
    feed(deployment, rng.normal(size=(2000, 3)))  # the shift ends: the state ends with it
    assert not {f.feature: f for f in deployment.report(0).features}["c"].drifted


def test_the_false_alarm_rate_is_shared_by_the_two_drift_detectors():
    policy = default_policy()
    assert policy.false_alarms_per_100k == 1 and detector_run_length(policy) == 200_000
    policy.false_alarms_per_100k = 20
    assert detector_run_length(policy) == 10_000
    policy.ClearField("false_alarms_per_100k")  # a policy stored before the rate existed
    assert detector_run_length(policy) == 200_000
    deployment, rng = monitor(3)
    events = feed(deployment, rng.normal(size=(20_000, 3)))
    assert len(events) <= 1  # a stationary stream at the default (expected: 0.2 events)


def _retrainer(store: MonitorStore) -> Retrainer:
    """A Retrainer whose clients go nowhere: these tests never reach the other services."""
    return Retrainer(store, RegistryClient("127.0.0.1:1"), SchedulerClient("127.0.0.1:1"), Changes())


def test_a_retraining_that_waits_holds_up_no_other(tmp_path):
    """A round waiting for room on a full STRICT node (its job PENDING, for up to the training
    deadline) once held the Monitor's one retraining thread, and every other deployment's
    retraining behind it. Each now runs on a thread of its own."""
    retrainer = _retrainer(MonitorStore(tmp_path / "monitor.sqlite3"))
    release, finished = threading.Event(), []

    def retrain(job, record) -> None:  # the rounds themselves are tested on real parts in test_loop.py
        if job.deployment_id == "d-waits":
            release.wait(30)
        finished.append(job.deployment_id)

    retrainer._retrain = retrain
    retrainer.start()
    context = ModelContext("m", 1, types_pb2.TASK_CLASSIFICATION, ("x",), np.zeros((4, 1)), np.zeros(4))
    try:
        for deployment in ("d-waits", "d-other"):
            retrainer.submit(Job(deployment, context, "", 0, 0, 0.95))
        deadline = time.monotonic() + 10
        while "d-other" not in finished:
            assert time.monotonic() < deadline, finished
            time.sleep(0.05)
        assert finished == ["d-other"]
    finally:
        release.set()
        retrainer.stop()
    assert sorted(finished) == ["d-other", "d-waits"]


def test_a_retraining_the_monitor_was_stopped_in_fails_with_the_reason(tmp_path):
    store = MonitorStore(tmp_path / "monitor.sqlite3")
    running = monitor_pb2.Retraining(
        id="r-0123456789ab", deployment_id="d-1", state=monitor_pb2.RETRAINING_STATE_TRAINING
    )
    done = monitor_pb2.Retraining(id="r-ba9876543210", deployment_id="d-1", state=monitor_pb2.RETRAINING_STATE_REJECTED)
    for record in (running, done):
        store.put_retraining(record.id, record.deployment_id, record.SerializeToString())
    _retrainer(store).recover()
    states = {r.id: r for r in map(monitor_pb2.Retraining.FromString, store.retrainings("d-1"))}
    assert states[running.id].state == monitor_pb2.RETRAINING_STATE_FAILED
    assert states[running.id].reason == "interrupted: the Monitor stopped during it"
    assert states[done.id].state == monitor_pb2.RETRAINING_STATE_REJECTED
