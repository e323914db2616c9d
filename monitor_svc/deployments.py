"""The Monitor's live state, apart from its servicer: one DeploymentMonitor per deployment (for
the version it serves; a rollout gets a fresh one), the policies they run with, the feedback
the runtimes dropped, and what a batch of feedback or labels does to them: detectors fed,
events published, a retraining submitted when one is due."""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable

import numpy as np

from mlaas.errors import InvalidArgument, NotFound, Unavailable
from mlaas.services.label_store import Labeled
from mlaas.v1 import monitor_pb2
from monitor_svc.changes import Changes
from monitor_svc.context import ContextLoader
from monitor_svc.monitoring import DeploymentMonitor, default_policy
from monitor_svc.retrainer import Job, Retrainer, Site
from monitor_svc.retraining import RetrainSchedule
from monitor_svc.store import MonitorStore
from monitor_svc.trials import Trials

log = logging.getLogger(__name__)

M = monitor_pb2
MAX_WINDOW_LABELS = 10_000  # a node sends windows of a few dozen labels


def spread_errors(errors: int, labels: int) -> np.ndarray:
    """A window's count of wrong predictions as outcomes (1.0: wrong) spread evenly over it."""
    outcomes = np.zeros(labels)
    outcomes[np.linspace(0, labels - 1, errors).round().astype(int)] = 1.0
    return outcomes


class DeploymentMonitors:
    def __init__(
        self, store: MonitorStore, contexts: ContextLoader, retrainer: Retrainer, changes: Changes, trials: Trials,
        privacy_spent: Callable[[str], float | None],
    ):  # fmt: skip
        self.trials = trials
        self._privacy_spent = privacy_spent  # the scheduler's count (monitor_svc/privacy.py)
        self._store = store
        self._contexts = contexts
        self._retrainer = retrainer
        self._changes = changes
        self._monitors: dict[str, DeploymentMonitor] = {}
        self._strict: dict[str, bool] = {}  # what each deployment's feedback showed (kept across policy changes)
        # Retraining series by deployment: they outlive a version (a rollout continues them).
        self._schedules: dict[str, RetrainSchedule] = {}
        self._labels_seen: dict[str, int] = {}  # the last matched-label number, by deployment
        # The performance event that started each series, and when it was raised.
        self._triggers: dict[str, tuple[str, float]] = {}
        # The last label number each deployment's serving version learnt from in a federated round.
        self._learnt: dict[str, int] = {}
        self._dropped: collections.Counter[str] = collections.Counter()  # by deployment, since start
        self._lock = threading.Lock()

    # -- policies and monitors ------------------------------------------------------------------

    def policy(self, deployment_id: str) -> monitor_pb2.MonitorPolicy:
        raw = self._store.policy(deployment_id)
        return M.MonitorPolicy.FromString(raw) if raw else default_policy()

    def set_policy(self, deployment_id: str, policy: monitor_pb2.MonitorPolicy) -> None:
        self._store.put_policy(deployment_id, policy.SerializeToString())
        with self._lock:  # detectors are rebuilt with the new policy on the next feedback
            replaced = self._monitors.pop(deployment_id, None)
            schedule = self._schedules.get(deployment_id)
            if schedule is not None:
                schedule.follow(policy)
        if replaced is not None:
            replaced.close()

    def for_version(self, deployment_id: str, model_name: str, version: int, strict: bool) -> DeploymentMonitor:
        """The deployment's monitor for `version`; a new version (a rollout) gets a new one."""
        with self._lock:
            current = self._monitors.get(deployment_id)
            if current is not None and current.context.version >= version:
                return current
        if not model_name:
            raise InvalidArgument("model_name is required in the first feedback of a deployment")
        context = self._contexts.load(model_name, version)  # outside the lock: it may download the model
        monitor = DeploymentMonitor(deployment_id, context, self.policy(deployment_id), strict)
        monitor.privacy_spent = self._privacy_spent(deployment_id) or 0.0
        with self._lock:
            current = self._monitors.get(deployment_id)
            if current is not None and current.context.version >= version:
                return current  # another stream made it meanwhile, and counts into it already
            self._monitors[deployment_id] = monitor
            self._strict[deployment_id] = strict
        if current is not None:
            current.close()

        def scan_waiting() -> None:  # not in the thread that ends a calibration: it may hold monitor.lock
            threading.Thread(target=self._scan_waiting, args=(monitor,), name="scan-waiting", daemon=True).start()

        monitor.when_calibrated(scan_waiting)
        return monitor

    def _scan_waiting(self, monitor: DeploymentMonitor) -> None:
        """Once a scan is calibrated, the rows it kept meanwhile are scanned, whether or not more
        feedback comes soon."""
        if monitor.closed:  # replaced: its calibration was stopped, or its rows concern nobody
            return
        features = monitor.context.reference.shape[1]
        try:
            with monitor.lock:
                events = monitor.observe(np.zeros((0, features)), np.zeros(0))
            self.publish(monitor.deployment_id, events)
        except Unavailable:  # the store is closing: the Monitor stops
            return
        except Exception as err:  # killed as the Monitor exits
            log.warning("the rows %s's drift scans kept could not be scanned: %s", monitor.deployment_id, err)

    def is_open(self, deployment_id: str) -> bool:
        """The deployment's feedback showed it OPEN (its rows came here)."""
        return self._strict.get(deployment_id) is False

    def shown_strict(self, deployment_id: str) -> bool:
        """The deployment's feedback showed it STRICT (summaries came), a policy change since or not."""
        return self._strict.get(deployment_id) is True

    def get(self, deployment_id: str) -> DeploymentMonitor | None:
        return self._monitors.get(deployment_id)

    def known(self, deployment_id: str) -> DeploymentMonitor:
        monitor = self._monitors.get(deployment_id)
        if monitor is None:
            raise NotFound(f"no feedback from deployment {deployment_id!r} yet")
        return monitor

    def drift_report(self, deployment_id: str, recent_events: int) -> monitor_pb2.DriftReport:
        """What the deployment's monitors found: drift, its labels, its trial, and its latest
        events (every version's)."""
        monitor = self.known(deployment_id)
        # STRICT: no label is here; the node's counts are what the detector has seen.
        matched = monitor.labels_seen if monitor.strict else self._store.label_count(deployment_id)[1]
        report = monitor.report(matched)
        report.feedback_dropped = self.dropped(deployment_id)
        if (trial := self.trials.status(deployment_id)) is not None:
            report.trial.CopyFrom(trial)
        recent = self._store.recent_events(deployment_id, recent_events)
        report.recent_events.extend(monitor_pb2.DriftEvent.FromString(raw) for raw in recent)
        return report

    def count_dropped(self, deployment_id: str, records: int) -> None:
        with self._lock:
            self._dropped[deployment_id] += records

    def dropped(self, deployment_id: str) -> int:
        return self._dropped[deployment_id]

    # -- what a batch does ----------------------------------------------------------------------

    def learn(self, monitor: DeploymentMonitor, matched: list[Labeled]) -> list[monitor_pb2.DriftEvent]:
        """Matched labels into the performance detector; a change it dates starts a series of
        retrainings (RetrainSchedule), and a round that is due is submitted."""
        events = monitor.learn(matched)
        if matched:
            self.trials.observe(monitor, matched)
            self._plan(monitor, matched[-1].number)
        return events

    def learn_counts(
        self, monitor: DeploymentMonitor, counts: monitor_pb2.LabelSummary
    ) -> list[monitor_pb2.DriftEvent]:
        """A STRICT node's window of labels, in counts: its errors spread evenly over the window
        (the order within it stays on the node), into the performance detector, and a trial's
        wins and losses into the trial. A change they date is retrained on the node (Retrainer),
        from the labels kept there."""
        if not 0 <= counts.errors <= counts.labels <= MAX_WINDOW_LABELS:
            raise InvalidArgument(f"a label summary needs 0 <= errors <= labels <= {MAX_WINDOW_LABELS}")
        trial = counts.trial
        if min(trial.wins, trial.losses) < 0 or not trial.wins + trial.losses <= trial.labels <= counts.labels:
            raise InvalidArgument("a trial count needs 0 <= wins, losses; wins + losses <= labels <= the window's")
        events = monitor.learn_errors(spread_errors(counts.errors, counts.labels), counts.first_label)
        if trial.labels:
            self.trials.observe_counts(monitor, counts.model_version, trial)
        if counts.labels:  # the node numbers its labels; other versions' may come between these
            self._plan(monitor, counts.first_label + counts.labels - 1)
        return events

    def _plan(self, monitor: DeploymentMonitor, seen: int) -> None:
        """After labels up to number `seen`: a change the detector dated starts a series of
        retrainings (RetrainSchedule), and a round that is due is submitted."""
        deployment_id, policy = monitor.deployment_id, monitor.policy
        with self._lock:
            seen = self._labels_seen[deployment_id] = max(self._labels_seen.get(deployment_id, 0), seen)
            schedule = self._schedules.setdefault(deployment_id, RetrainSchedule.for_policy(policy))
            if monitor.change is not None:
                change, event_id = monitor.change
                monitor.change = None
                if schedule.on_alarm(change, seen):
                    self._triggers[deployment_id] = (event_id, time.time())
            due = schedule.due(seen)
        if due is None:
            return
        if monitor.retraining_unavailable():
            self._round_finished(deployment_id, False)
            return
        sites, members = self._federation(monitor, seen - due.since) if policy.federation else ((), ())
        learnt: dict[str, int] = {}  # the Retrainer fills it when a federated round rolls out

        def done(rolled_out: bool) -> None:
            with self._lock:
                self._learnt.update(learnt)
            self._round_finished(deployment_id, rolled_out)

        trigger, alarm_at = self._triggers.get(deployment_id, ("", 0.0))
        job = Job(
            deployment_id, monitor.context, trigger, due.since, due.unseen_after,
            policy.challenger_confidence, due.follow_up, strict=monitor.strict,
            epsilon=policy.privacy_epsilon, budget=policy.privacy_budget,
            federation=self._store.federation_of(deployment_id) if policy.federation else "",
            sites=sites, members=members, learnt=learnt, done=done, alarm_at=alarm_at if not due.follow_up else 0.0,
            shadow=policy.shadow_retrained,
        )  # fmt: skip
        self._retrainer.submit(job)

    def _federation(self, monitor: DeploymentMonitor, labels: int) -> tuple[tuple[Site, ...], tuple[str, ...]]:
        """(the other sites that take part, every other member the new version rolls out to): the
        members of the deployment's federation that serve the same version on a STRICT node. A
        site takes part once it has `min_labels` labels its version never learnt from, and learns
        from as many of its latest as the trigger has since its change."""
        sites, members = [], []
        for member in self._store.federation_members(monitor.deployment_id)[1:]:
            other = self._monitors.get(member)
            if other is None or not other.strict or other.context.version != monitor.context.version:
                continue
            if other.context.name != monitor.context.name:
                continue
            members.append(member)
            with self._lock:
                learnt, latest = self._learnt.get(member, 0), self._labels_seen.get(member, 0)
            if latest - learnt >= monitor.policy.min_labels:
                sites.append(Site(member, since_label=max(learnt, latest - labels), unseen_after=learnt))
        return tuple(sites), tuple(members)

    def _round_finished(self, deployment_id: str, rolled_out: bool) -> None:
        with self._lock:
            self._schedules[deployment_id].finished(rolled_out, self._labels_seen.get(deployment_id, 0))
            monitor = self._monitors.get(deployment_id)
        if monitor is not None and monitor.policy.privacy_epsilon:
            spent = self._privacy_spent(deployment_id)
            monitor.privacy_spent = monitor.privacy_spent if spent is None else spent

    def publish(self, deployment_id: str, events: list[monitor_pb2.DriftEvent]) -> None:
        for event in events:
            self._store.add_event(deployment_id, event.SerializeToString())
        if events:
            self._changes.notify()
