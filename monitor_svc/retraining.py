"""When to retrain, free of service code (the Monitor and bench/ both use it; a round's steps
on the data are in mlaas/retraining/rounds.py).

A retraining starts on confirmed drift: a performance-drift alarm, i.e. labels show the model
got worse (a covariate shift that does not hurt accuracy is reported, not acted on). The
alarm's window dates the change; once `min_labels` labeled samples have arrived since then,
the registered recipe is trained on the labels since the change (a scikit-learn pipeline from
the allowlist, never user code), the challenger and the champion are scored on a held-out part
of them, and the challenger is rolled out only if a paired test on that part says it is better
at the policy's confidence; what is rolled out is then fitted on all of them, held-out part
included. A winning challenger is followed by another round on half as many labels again since
the same change (RetrainSchedule), so the served model learns more of the new concept as its
labels accumulate, until the series' last round.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlaas.v1 import monitor_pb2


@dataclass(frozen=True)
class Round:
    """A retraining due: it learns from the labels after `since`; the champion never saw those
    after `unseen_after`, so only they may judge it."""

    since: int
    unseen_after: int
    follow_up: bool  # the serving version came from an earlier round of the same series


@dataclass
class RetrainSchedule:
    """When to retrain one deployment, in matched-label numbers (the order labels arrived in,
    across model versions).

    A performance alarm dates a change and starts a series: once `min_labels` labels followed
    the change, round 1 fits the labels since it. Each round after a win is on `growth` times as
    many labels since the same change (abrupt change: the more of the new concept, the better;
    1.5 rather than 2 keeps what serves closer to every label there is, at a round more per
    series); one that loses leaves the served version, and the next still comes on `growth`
    times its labels (on noisy concepts an unlucky held-out draw must not stop the learning). Until a round has won,
    a loss is tried again `min_labels` labels later on the latest labels only (gradual change:
    the concept was still moving). The series ends after `max_rounds`; then an alarm may start
    a new one after `quiet_labels` more labels (the new version's own detector needs them to
    settle).

    An early round comes first when the alarm leaves time for one: once `first_labels` (fewer
    than `min_labels`) labels followed the change, it rolls out only if the paired test is
    convinced on its few held-out labels (an abrupt change the champion fails badly). If it
    loses, it does not count, and round 1 follows at `min_labels`; if it wins, the next round
    comes at `min_labels`, and the series goes on as one without an early round.
    """

    min_labels: int = 500
    quiet_labels: int = 500
    max_rounds: int = 8  # 200, 500, 750, 1,125 ... 5,695 labels with the defaults
    growth: float = 1.5  # a round after a win waits for this many times the labels of the last
    first_labels: int = 0  # 0: round 1 waits for min_labels
    change_start: int | None = None  # the labels of the series start after this one
    size: int = 0  # labels since the change the next round waits for
    rounds: int = 0
    wins: int = 0
    running: bool = False  # a round was submitted and its outcome is not known yet
    quiet_until: int = 0
    unseen_after: int = 0  # the serving model learnt from no label after this one
    _due_at: int = 0

    @classmethod
    def for_policy(cls, policy: monitor_pb2.MonitorPolicy) -> RetrainSchedule:
        schedule = cls()
        schedule.follow(policy)
        return schedule

    def follow(self, policy: monitor_pb2.MonitorPolicy) -> None:
        """The policy's label counts from now on (a private or federated series has no early round)."""
        self.min_labels, self.quiet_labels = policy.min_labels, policy.cooldown_labels
        early = not (policy.privacy_epsilon or policy.federation)
        self.first_labels = policy.first_round_labels if early else 0

    def on_alarm(self, change_start: int, labels_seen: int) -> bool:
        """A performance alarm dating a change; True when it starts a series."""
        if self.change_start is not None or labels_seen < self.quiet_until:
            return False
        first = min(self.first_labels or self.min_labels, self.min_labels)
        self.change_start, self.size, self.rounds, self.wins = change_start, first, 0, 0
        self.unseen_after = change_start  # the serving model knows nothing of the new concept
        return True

    def due(self, labels_seen: int) -> Round | None:
        """The round due now (it is then counted as running), else None."""
        if self.change_start is None or self.running or labels_seen - self.change_start < self.size:
            return None
        if labels_seen - self.change_start >= self.min_labels:  # the alarm came late: no early round
            self.size = max(self.size, self.min_labels)
        self.running, self.rounds, self._due_at = True, self.rounds + 1, labels_seen
        return Round(self.change_start, self.unseen_after, follow_up=self.wins > 0)

    def finished(self, rolled_out: bool, labels_seen: int) -> None:
        """The outcome of the running round."""
        self.running = False
        self.wins += rolled_out
        if rolled_out:  # the new version learnt from every label up to the round's start
            self.unseen_after = self._due_at
        if self.rounds < self.max_rounds and self.wins:  # after an early round, the usual sizes on
            self.size = max(round(self.size * self.growth), self.min_labels)
            return
        if not self.wins and self.size < self.min_labels:  # an early round lost: it does not count,
            self.size, self.rounds = self.min_labels, self.rounds - 1  # and the usual round 1 follows
            return
        if self.rounds < self.max_rounds and not self.wins:  # again, on the latest labels
            assert self.change_start is not None, "a round runs within a series"  # due() checked
            self.change_start = max(self.change_start, self._due_at - self.size + self.min_labels)
            return
        self.change_start = None
        self.quiet_until = labels_seen + self.quiet_labels
