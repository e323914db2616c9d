"""The Monitor's deployments in process (monitor_svc/deployments.py): one monitor per deployment
and version, however many streams bring the new version's first feedback at once."""

from __future__ import annotations

import threading

import numpy as np

from mlaas.v1 import types_pb2
from monitor_svc.changes import Changes
from monitor_svc.deployments import DeploymentMonitors
from monitor_svc.monitoring import ModelContext
from monitor_svc.store import MonitorStore


class SlowContexts:
    """Loads a version's context only once `callers` ask at once (a download, on a busy machine)."""

    def __init__(self, callers: int):
        self._together = threading.Barrier(callers, timeout=60)

    def load(self, name: str, version: int) -> ModelContext:
        self._together.wait()
        reference = np.zeros((4, 2))
        return ModelContext(name, version, types_pb2.TASK_CLASSIFICATION, ("x0", "x1"), reference, np.zeros(4))


def test_streams_that_bring_a_new_versions_first_feedback_at_once_share_its_monitor(tmp_path):
    """A STRICT runtime sends its label counts and its feature summaries on streams of their own:
    both made a monitor for the new version, and the second replaced the first with the counts
    already learnt in it (a private round's test saw 960 of 1,472 labels)."""
    store = MonitorStore(tmp_path / "monitor.sqlite3")
    # No retrainer and no trials: only monitors are made here.
    deployments = DeploymentMonitors(store, SlowContexts(2), None, Changes(), None, lambda _: None)
    made = []

    def first_feedback() -> None:
        monitor = deployments.for_version("d-1", "m", 2, True)
        with monitor.lock:
            monitor.learn_errors(np.zeros(32), 1)
        made.append(monitor)

    streams = [threading.Thread(target=first_feedback) for _ in range(2)]
    for stream in streams:
        stream.start()
    for stream in streams:  # a monitor's detectors take seconds of CPU to set up on a busy machine
        stream.join(120)
    assert len(made) == 2 and made[0] is made[1] is deployments.get("d-1")
    assert deployments.known("d-1").labels_seen == 64  # both streams' labels counted
    store.close()
