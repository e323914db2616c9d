"""The Monitor's live state, apart from its servicer: one DeploymentMonitor per deployment (for
the version it serves; a rollout gets a fresh one), the policies they run with, the feedback
the runtimes dropped, and what a batch of feedback or labels does to them: detectors fed,
events published, a retraining submitted when one is due."""

from __future__ import annotations

import collections
import threading

from mlaas.errors import InvalidArgument, NotFound
from mlaas.v1 import monitor_pb2
from monitor_svc.changes import Changes
from monitor_svc.context import ContextLoader
from monitor_svc.monitoring import DeploymentMonitor, default_policy
from monitor_svc.retrainer import Job, Retrainer
from monitor_svc.store import Labeled, MonitorStore

M = monitor_pb2


class DeploymentMonitors:
    def __init__(self, store: MonitorStore, contexts: ContextLoader, retrainer: Retrainer, changes: Changes):
        self._store = store
        self._contexts = contexts
        self._retrainer = retrainer
        self._changes = changes
        self._monitors: dict[str, DeploymentMonitor] = {}
        self._dropped: collections.Counter[str] = collections.Counter()  # by deployment, since start
        self._lock = threading.Lock()

    # -- policies and monitors ------------------------------------------------------------------

    def policy(self, deployment_id: str) -> monitor_pb2.MonitorPolicy:
        raw = self._store.policy(deployment_id)
        return M.MonitorPolicy.FromString(raw) if raw else default_policy()

    def set_policy(self, deployment_id: str, policy: monitor_pb2.MonitorPolicy) -> None:
        self._store.put_policy(deployment_id, policy.SerializeToString())
        with self._lock:  # detectors are rebuilt with the new policy on the next feedback
            self._monitors.pop(deployment_id, None)

    def for_version(self, deployment_id: str, model_name: str, version: int, strict: bool) -> DeploymentMonitor:
        """The deployment's monitor for `version`; a new version (a rollout) gets a new one."""
        with self._lock:
            current = self._monitors.get(deployment_id)
            if current is not None and current.context.version >= version:
                return current
        if not model_name:
            raise InvalidArgument("model_name is required in the first feedback of a deployment")
        context = self._contexts.load(model_name, version)
        monitor = DeploymentMonitor(deployment_id, context, self.policy(deployment_id), strict)
        if current is not None:  # after a retraining: let the new version settle first
            monitor.trigger.cooling_until = monitor.policy.cooldown_labels
        with self._lock:
            self._monitors[deployment_id] = monitor
        return monitor

    def get(self, deployment_id: str) -> DeploymentMonitor | None:
        return self._monitors.get(deployment_id)

    def known(self, deployment_id: str) -> DeploymentMonitor:
        monitor = self._monitors.get(deployment_id)
        if monitor is None:
            raise NotFound(f"no feedback from deployment {deployment_id!r} yet")
        return monitor

    def count_dropped(self, deployment_id: str, records: int) -> None:
        with self._lock:
            self._dropped[deployment_id] += records

    def dropped(self, deployment_id: str) -> int:
        return self._dropped[deployment_id]

    # -- what a batch does ----------------------------------------------------------------------

    def learn(self, monitor: DeploymentMonitor, matched: list[Labeled]) -> list[monitor_pb2.DriftEvent]:
        """Matched labels into the performance detector; submits the retraining they make due."""
        events = monitor.learn(matched)
        since = monitor.due_since()
        if since is not None:
            if not monitor.retraining_unavailable():
                job = Job(
                    monitor.deployment_id, monitor.context, monitor.last_performance_event, since,
                    monitor.policy.min_improvement,
                )  # fmt: skip
                self._retrainer.submit(job)
            monitor.trigger.finished(monitor.labels_seen)
        return events

    def publish(self, deployment_id: str, events: list[monitor_pb2.DriftEvent]) -> None:
        for event in events:
            self._store.add_event(deployment_id, event.SerializeToString())
        if events:
            self._changes.notify()
