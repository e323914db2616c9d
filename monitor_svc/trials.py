"""A deployment's trial judged on live labels: while a challenger runs beside the served version
(in shadow, or as a canary: the scheduler's UpdateDeployment), the runtimes report both answers to
each row they both gave; as labels arrive for those rows, the two are compared on them, and once
`trial_labels` such labels are in, the same one-sided paired test as a retraining round's
(McNemar, Wilcoxon) at the policy's challenger_confidence decides: the challenger is promoted (a
hot swap to it) or dropped. One look, at a size fixed in advance, so the test's level holds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from mlaas.services.label_store import Labeled
from mlaas.services.rounds import judge, targets
from mlaas.v1 import monitor_pb2, types_pb2
from monitor_svc.monitoring import DEFAULT_TRIAL_LABELS, DeploymentMonitor
from monitor_svc.store import MonitorStore

M = monitor_pb2
# After a trial is decided, its last rows' labels are still on their way for a while: they count
# for nothing. Labels of the same two versions after that start the count of a new trial of them
# (both answered those rows too, so they are as good a sample).
SETTLE_SECONDS = 60.0
# (deployment, promote, why): ends the trial at the scheduler; called on a thread of its own.
EndTrial = Callable[[str, bool, str], None]


@dataclass
class _Trial:
    champion: int
    challenger: int
    task: int
    labels: list[str] = field(default_factory=list)
    champion_answers: list[str] = field(default_factory=list)
    challenger_answers: list[str] = field(default_factory=list)
    judgement: M.TrialJudgement | None = None  # once decided
    decided_at: float = 0.0  # monotonic

    def judged(self, confidence: float, decide: bool) -> M.TrialJudgement:
        """The paired test on the labels so far; with `decide`, its outcome."""
        classification = self.task == types_pb2.TASK_CLASSIFICATION
        verdict = judge(
            self.task, targets(self.labels, classification), targets(self.champion_answers, classification),
            targets(self.challenger_answers, classification), confidence,
        )  # fmt: skip
        outcome = ""
        if decide:
            outcome = f"promoted: {verdict.reason}" if verdict.roll_out else f"dropped: {verdict.reason}"
        return M.TrialJudgement(
            champion_version=self.champion, challenger_version=self.challenger, labels=len(self.labels),
            wins=verdict.wins, losses=verdict.losses, outcome=outcome,
        )  # fmt: skip


class Trials:
    def __init__(self, store: MonitorStore, end: EndTrial, settle_seconds: float = SETTLE_SECONDS):
        self._store = store
        self._end = end
        self._settle = settle_seconds
        self._trials: dict[str, _Trial] = {}
        self._shadowed: set[str] = set()  # deployments whose runtimes sent a challenger's answers
        self._lock = threading.Lock()

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
        needed = monitor.policy.trial_labels or DEFAULT_TRIAL_LABELS
        decided = None
        with self._lock:
            for labeled in matched:
                if labeled.request_id not in shadows:
                    continue
                challenger, answer = shadows[labeled.request_id]
                trial = self._trials.get(deployment)
                other_pair = trial is None or (trial.champion, trial.challenger) != (labeled.model_version, challenger)
                if other_pair or (trial.judgement and time.monotonic() - trial.decided_at >= self._settle):
                    trial = _Trial(labeled.model_version, challenger, monitor.context.task)  # a trial anew
                    self._trials[deployment] = trial
                if trial.judgement is not None:
                    continue  # the decided trial's last rows, still on their way
                trial.labels.append(labeled.label)
                trial.champion_answers.append(labeled.prediction)
                trial.challenger_answers.append(answer)
                if len(trial.labels) >= needed:
                    trial.judgement = decided = trial.judged(monitor.policy.challenger_confidence, decide=True)
                    trial.decided_at = time.monotonic()
        if decided is not None:
            promote = decided.outcome.startswith("promoted")
            threading.Thread(
                target=self._end, args=(deployment, promote, decided.outcome), name=f"trial-{deployment}", daemon=True
            ).start()

    def status(self, deployment_id: str) -> M.TrialJudgement | None:
        """The deployment's latest trial as judged so far, or as it ended."""
        with self._lock:
            trial = self._trials.get(deployment_id)
            if trial is None:
                return None
            return trial.judgement or trial.judged(confidence=0.95, decide=False)
