"""A deployment's trial judged on live labels: while a challenger runs beside the served version
(in shadow, or as a canary: the scheduler's UpdateDeployment), the runtimes report both answers to
each row they both gave; as labels arrive for those rows, the two are compared on them, and once
`trial_labels` such labels are in, the same one-sided paired test as a retraining round's
(McNemar, Wilcoxon) at the policy's challenger_confidence decides: the challenger is promoted (a
hot swap to it) or dropped. One look, at a size fixed in advance, so the test's level holds.

A STRICT deployment's node keeps both answers and its labels, and sends only counts per window of
labels (TrialCount): rows both answered, and those only the challenger or only the champion got
right (or came closer to). Those are judged by the sign test on the wins and losses (McNemar's for
classification), which needs nothing else.

Each trial as counted so far is in the Monitor's store: a Monitor that restarts goes on counting
where it stopped, and ends at the scheduler a trial it had decided but not yet ended.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from mlaas.retraining.outcomes import targets, usable
from mlaas.retraining.rounds import judge, mcnemar
from mlaas.services.label_store import Labeled
from mlaas.v1 import monitor_pb2, types_pb2
from monitor_svc.monitoring import DEFAULT_TRIAL_LABELS, DeploymentMonitor
from monitor_svc.store import MonitorStore

M = monitor_pb2
# After a trial is decided, its last rows' labels are still on their way for a while: they count
# for nothing. Labels of the same two versions after that start the count of a new trial of them
# (both answered those rows too, so they are as good a sample).
SETTLE_SECONDS = 60.0
# (deployment, promote, champion, challenger, why) -> whether that trial is over at the scheduler
# (ended, or no longer running); called on a thread of its own.
EndTrial = Callable[[str, bool, int, int, str], bool]


@dataclass
class _Trial:
    champion: int
    challenger: int
    task: int
    # An OPEN deployment's: the labels and both answers to their rows.
    labels: list[str] = field(default_factory=list)
    champion_answers: list[str] = field(default_factory=list)
    challenger_answers: list[str] = field(default_factory=list)
    # A STRICT deployment's: what its node counted.
    counted: int = 0
    wins: int = 0
    losses: int = 0
    judgement: bytes = b""  # the TrialJudgement, once decided
    decided_at: float = 0.0  # seconds since the epoch
    ended: bool = False  # at the scheduler (or there was nothing left to end)

    @property
    def size(self) -> int:
        return len(self.labels) + self.counted

    def judged(self, confidence: float, decide: bool) -> M.TrialJudgement:
        """The paired test on the labels so far; with `decide`, its outcome."""
        if self.counted:
            p_value = mcnemar(self.wins, self.losses)  # the sign test on the node's counts
            wins, losses, roll_out = self.wins, self.losses, p_value < 1.0 - confidence
            scores = f"the challenger did better on {wins} and worse on {losses} of {self.counted} labels"
            reason = f"{scores}: better (p={p_value:.2g})" if roll_out else (
                f"{scores}: not better at {confidence:.0%} confidence (p={p_value:.2g})"
            )  # fmt: skip
        else:
            classification = self.task == types_pb2.TASK_CLASSIFICATION
            verdict = judge(
                self.task, targets(self.labels, classification), targets(self.champion_answers, classification),
                targets(self.challenger_answers, classification), confidence,
            )  # fmt: skip
            wins, losses, roll_out, reason = verdict.wins, verdict.losses, verdict.roll_out, verdict.reason
        outcome = (f"promoted: {reason}" if roll_out else f"dropped: {reason}") if decide else ""
        return M.TrialJudgement(
            champion_version=self.champion, challenger_version=self.challenger, labels=self.size, wins=wins,
            losses=losses, outcome=outcome,
        )  # fmt: skip

    def decided(self) -> M.TrialJudgement | None:
        return M.TrialJudgement.FromString(self.judgement) if self.judgement else None

    def to_json(self) -> str:
        return json.dumps({**dataclasses.asdict(self), "judgement": self.judgement.hex()})

    @classmethod
    def from_json(cls, text: str) -> _Trial:
        fields = json.loads(text)
        return cls(**{**fields, "judgement": bytes.fromhex(fields["judgement"])})


class Trials:
    def __init__(self, store: MonitorStore, end: EndTrial, settle_seconds: float = SETTLE_SECONDS):
        self._store = store
        self._end = end
        self._settle = settle_seconds
        self._trials = {deployment: _Trial.from_json(record) for deployment, record in store.every_trial()}
        # deployments whose runtimes sent a challenger's answers
        self._shadowed = store.shadowed_deployments() | set(self._trials)
        self._lock = threading.Lock()

    def resume(self) -> None:
        """After a restart: trials decided but not ended at the scheduler are ended now."""
        with self._lock:
            unended = [(d, t) for d, t in self._trials.items() if t.judgement and not t.ended]
        for deployment, trial in unended:
            self._ending(deployment, trial)

    def shadowed(self, deployment_id: str) -> None:
        """The deployment's runtimes sent a challenger's answers: its labels are looked up for them."""
        self._shadowed.add(deployment_id)

    def observe(self, monitor: DeploymentMonitor, matched: list[Labeled]) -> None:
        """Labels just matched with their predictions; those of rows a trial's challenger
        answered too count for it, and the trial is decided once it has enough."""
        deployment = monitor.deployment_id
        if deployment not in self._shadowed:  # no trial ever: no lookup on the labels' path
            return
        shadows = self._store.shadow_predictions(deployment, [x.request_id for x in matched]) if matched else {}
        if not shadows:
            return
        with self._lock:
            for labeled in usable(matched, monitor.context.task == types_pb2.TASK_CLASSIFICATION):
                if labeled.request_id not in shadows:
                    continue
                challenger, answer = shadows[labeled.request_id]
                trial = self._counting(monitor, labeled.model_version, challenger)
                if trial is not None:
                    trial.labels.append(labeled.label)
                    trial.champion_answers.append(labeled.prediction)
                    trial.challenger_answers.append(answer)
                    self._decide_if_due(monitor, trial)
            self._save(deployment)

    def observe_counts(self, monitor: DeploymentMonitor, champion: int, counts: M.TrialCount) -> None:
        """A STRICT node's count of a window's labels of rows its trial's challenger answered too
        (checked by the caller)."""
        if not counts.labels or counts.challenger_version in (0, champion):
            return
        self._shadowed.add(monitor.deployment_id)
        with self._lock:
            trial = self._counting(monitor, champion, counts.challenger_version)
            if trial is not None:
                trial.counted += counts.labels
                trial.wins += counts.wins
                trial.losses += counts.losses
                self._decide_if_due(monitor, trial)
            self._save(monitor.deployment_id)

    def _counting(self, monitor: DeploymentMonitor, champion: int, challenger: int) -> _Trial | None:
        """The trial that labels of (champion, challenger) rows count for now: the running one, or
        a new one; None for a decided trial's late rows (under the lock)."""
        trial = self._trials.get(monitor.deployment_id)
        if (
            trial is None
            or (trial.champion, trial.challenger) != (champion, challenger)
            or (trial.judgement and time.time() - trial.decided_at >= self._settle)
        ):
            trial = self._trials[monitor.deployment_id] = _Trial(champion, challenger, monitor.context.task)
        return None if trial.judgement else trial

    def _decide_if_due(self, monitor: DeploymentMonitor, trial: _Trial) -> None:
        """Decides the trial once it has its labels, and has it ended (under the lock)."""
        if trial.size >= (monitor.policy.trial_labels or DEFAULT_TRIAL_LABELS):
            decided = trial.judged(monitor.policy.challenger_confidence, decide=True)
            trial.judgement, trial.decided_at = decided.SerializeToString(), time.time()
            self._ending(monitor.deployment_id, trial)

    def _save(self, deployment: str) -> None:
        """The deployment's trial as counted now, in the store (under the lock)."""
        if (trial := self._trials.get(deployment)) is not None:
            self._store.put_trial(deployment, trial.to_json())

    def _ending(self, deployment: str, trial: _Trial) -> None:
        """Ends a decided trial at the scheduler, on a thread of its own; noted once it is over."""
        judgement = trial.decided()
        assert judgement is not None, "only a decided trial is ended"  # both callers check
        promote = judgement.outcome.startswith("promoted")

        def end() -> None:
            if not self._end(deployment, promote, trial.champion, trial.challenger, judgement.outcome):
                return
            with self._lock:
                if self._trials.get(deployment) is trial:
                    trial.ended = True
                    self._store.put_trial(deployment, trial.to_json())

        threading.Thread(target=end, name=f"trial-{deployment}", daemon=True).start()

    def status(self, deployment_id: str) -> M.TrialJudgement | None:
        """The deployment's latest trial as judged so far, or as it ended."""
        with self._lock:
            trial = self._trials.get(deployment_id)
            if trial is None:
                return None
            return trial.decided() or trial.judged(confidence=0.95, decide=False)
