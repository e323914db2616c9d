"""One deployment's monitoring: its detectors, fed by inference records and matched labels.

- data drift: a DriftScan over the input features against the version's reference data;
- prediction drift: a DriftScan over the model's first output (a class label is categorical, a
  regression value numeric) against the model's own outputs on the reference data;
- performance drift: an ErrorRateDetector over labeled samples, wrong or right as
  mlaas/retraining/outcomes.py says (a STRICT deployment's node says it in counts per window).

A new model version (after a rollout) gets fresh detectors against its own reference data.

Events: a detector restarts after each alarm, so a shift that persists keeps alarming. Each
feature (the prediction counts as one) is in a drift from its first alarm for as long as its
alarms come within HOLD_WINDOWS longest windows of one another; the report shows it drifted,
since that first alarm, meanwhile. An alarm is an event when one of its features is not in a
drift yet (so a change never hides behind another feature's drift), and, for a drift that goes
on, again once per hold (so a change that follows a false alarm on the same feature is not
hidden either: at most one hold late).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from google.protobuf.timestamp_pb2 import Timestamp

from mlaas.errors import InvalidArgument
from mlaas.retraining.federated import federated_recipe_problem
from mlaas.retraining.outcomes import Outcomes
from mlaas.retraining.private_fit import private_recipe_problem
from mlaas.services.label_store import Labeled
from mlaas.services.privacy_terms import budget_refusal
from mlaas.v1 import monitor_pb2, types_pb2
from monitor_svc.detectors import Alarm
from monitor_svc.detectors.error_rate import ErrorRateDetector
from monitor_svc.detectors.histogram import HistogramTest
from monitor_svc.detectors.scan import CATEGORICAL, NUMERIC, WINDOWS, DriftScan

M = monitor_pb2
HOLD_WINDOWS = 4
# The data and prediction drift detectors share the policy's false-alarm rate equally.
DEFAULT_FALSE_ALARMS_PER_100K = 1.0
DEFAULT_CHALLENGER_CONFIDENCE = 0.95
DEFAULT_TRIAL_LABELS = 300  # labels of rows both versions of a trial answered, to decide it
MAX_FALSE_ALARMS_PER_100K = 4_000.0  # each detector then expects one every 50 predictions
DRIFT_DETECTORS = 2
OPEN_NOT_PRIVATE = (
    "privacy_epsilon and federation apply to a STRICT deployment's rounds on its node; {} is OPEN: its labels "
    "come to the Monitor"
)


@dataclass(frozen=True)
class ModelContext:
    """What the Monitor knows of the version a deployment serves (from the registry)."""

    name: str
    version: int
    task: int
    feature_names: tuple[str, ...]
    reference: np.ndarray  # rows x features
    reference_predictions: np.ndarray  # the model's first output on the reference rows
    recipe: types_pb2.TrainingRecipe = field(default_factory=types_pb2.TrainingRecipe)
    artifact: Path | None = None  # the ONNX model, to score it beside a challenger
    owner: str = ""  # the tenant that registered it (its calibrations take that tenant's turns)

    @property
    def classification(self) -> bool:
        return self.task == types_pb2.TASK_CLASSIFICATION


def default_policy() -> monitor_pb2.MonitorPolicy:
    return M.MonitorPolicy(
        window_size=WINDOWS[-1],
        false_alarms_per_100k=DEFAULT_FALSE_ALARMS_PER_100K,
        auto_retrain=True,
        min_labels=500,
        first_round_labels=200,
        trial_labels=DEFAULT_TRIAL_LABELS,
        shadow_retrained=False,
        cooldown_labels=500,
        challenger_confidence=DEFAULT_CHALLENGER_CONFIDENCE,
        performance_expected_run_length=30_000,
    )


def detector_run_length(policy: monitor_pb2.MonitorPolicy) -> float:
    """Stationary predictions between one detector's false alarms, from the policy's rate for
    all of them (a policy stored before the rate existed has the default)."""
    rate = policy.false_alarms_per_100k if policy.HasField("false_alarms_per_100k") else DEFAULT_FALSE_ALARMS_PER_100K
    return DRIFT_DETECTORS * 100_000 / rate


@dataclass
class _Drift:
    """One feature's drift: first seen at `first_sample`, last alarmed at `last_sample`, last
    raised as an event at `event_sample`; it goes on while alarms come within `hold`."""

    first_sample: int
    first_time: Timestamp
    event_sample: int
    last_sample: int
    hold: int

    def going_on(self, sample: int) -> bool:
        return sample - self.last_sample <= self.hold


def scan_windows(longest: int) -> tuple[int, ...]:
    """8, 16, 32, ... up to `longest`."""
    return tuple(w for w in (2**k for k in range(3, 16)) if w <= max(longest, 8))


def _stamp() -> Timestamp:
    stamp = Timestamp()
    stamp.GetCurrentTime()
    return stamp


class DeploymentMonitor:
    def __init__(self, deployment_id: str, context: ModelContext, policy: monitor_pb2.MonitorPolicy, strict: bool):
        self.deployment_id = deployment_id
        self.context = context
        self.policy = policy
        self.strict = strict
        self.lock = threading.Lock()  # one batch at a time per deployment
        windows = scan_windows(policy.window_size)
        ert = detector_run_length(policy)
        names = context.feature_names or tuple(f"x{j}" for j in range(context.reference.shape[1]))
        # Calibrated in the background: the first feedback of a rollout does not wait for it.
        self.data = DriftScan.calibrating(context.reference, ert, names, windows=windows, owner=context.owner)
        kind = CATEGORICAL if context.classification else NUMERIC
        self.prediction = DriftScan.calibrating(
            context.reference_predictions.reshape(-1, 1).astype(np.float64), ert, ("prediction",), (kind,), windows,
            owner=context.owner,
        )  # fmt: skip
        self.performance = ErrorRateDetector(policy.performance_expected_run_length)
        self.closed = False
        # STRICT deployments send window summaries instead of rows.
        self.data_summaries = HistogramTest(context.reference, names, ert)
        self.prediction_summaries = HistogramTest(context.reference_predictions, ("prediction",), ert)
        self.labels_seen = 0  # matched labels since this version started serving
        self.label_base = 0  # matched-label number where this version's count starts
        self._outcomes = Outcomes(context.classification)
        # The change the latest performance alarm dates (the matched-label number its labels
        # start after) and its event's id, until DeploymentMonitors takes it.
        self.change: tuple[int, str] | None = None
        self._drifts: dict[tuple[int, str], _Drift] = {}  # (kind, feature) -> its drift
        self._recent_errors: list[float] = []
        self.privacy_spent = 0.0  # the epsilon the deployment's retrainings spent (its ledger's)

    def close(self) -> None:
        """Another version, or another policy, replaced this monitor: a calibration of its scans
        that nothing else waits for stops."""
        self.closed = True
        self.data.close()
        self.prediction.close()

    def when_calibrated(self, callback: Callable[[], None]) -> None:
        """`callback()` each time a calibration of its scans ends (their rows wait until then:
        DriftScan.update); it runs in whatever thread ends it, and should only hand work over."""
        for scan in (self.data, self.prediction):
            scan.when_calibrated(callback)

    def scans_unavailable(self) -> str:
        """Why its drift scans test nothing, if they do not."""
        return "; ".join(f"the {kind} drift scan: {scan.unavailable}" for kind, scan in (
            ("data", self.data), ("prediction", self.prediction)) if scan.unavailable)  # fmt: skip

    @property
    def samples_seen(self) -> int:
        return self.data.samples + self.data_summaries.samples

    def observe(self, inputs: np.ndarray, predictions: np.ndarray) -> list[monitor_pb2.DriftEvent]:
        """Inference records (rows in order); returns the drift events they raised (see the
        module docstring)."""
        events = []
        for kind, scan, rows in (
            (M.DRIFT_KIND_DATA, self.data, inputs),
            (M.DRIFT_KIND_PREDICTION, self.prediction, np.asarray(predictions, dtype=np.float64).reshape(-1, 1)),
        ):
            for alarm in scan.update(rows):
                event = self._note(kind, alarm, HOLD_WINDOWS * scan.windows[-1])
                if event is not None:
                    events.append(event)
        return events

    def _note(self, kind: monitor_pb2.DriftKind, alarm: Alarm, hold: int) -> monitor_pb2.DriftEvent | None:
        """Records an alarm in its features' drifts; the event it is, if it is one."""
        raise_event = False
        for feature in alarm.features:
            drift = self._drifts.get((kind, feature))
            if drift is None or not drift.going_on(alarm.sample):
                self._drifts[(kind, feature)] = _Drift(alarm.sample, _stamp(), alarm.sample, alarm.sample, hold)
                raise_event = True
            else:
                drift.last_sample = alarm.sample
                raise_event = raise_event or alarm.sample - drift.event_sample > hold
        if not raise_event:
            return None
        for feature in alarm.features:
            self._drifts[(kind, feature)].event_sample = alarm.sample
        return self._event(kind, alarm, alarm.sample)

    def summary_edges(self) -> monitor_pb2.SummaryEdges:
        """The bin edges this version's window summaries count over (the reference's deciles)."""
        return M.SummaryEdges(
            model_version=self.context.version,
            features=[M.BinEdges(edges=e.tolist()) for e in self.data_summaries.edges],
            outputs=[M.BinEdges(edges=e.tolist()) for e in self.prediction_summaries.edges],
        )

    def observe_summary(self, summary: monitor_pb2.WindowSummary) -> list[monitor_pb2.DriftEvent]:
        """A STRICT runtime's window summary; returns the drift events it raised. InvalidArgument
        for a summary counted over other edges than the reference's: the node's own quantiles
        would tell its data."""
        for test, features in ((self.data_summaries, summary.features), (self.prediction_summaries, summary.outputs)):
            for feature in features:
                index = feature.feature_index
                if not 0 <= index < len(test.edges) or not np.array_equal(feature.bin_edges, test.edges[index]):
                    raise InvalidArgument(
                        f"a window summary must count over the bin edges the Monitor gives for version "
                        f"{self.context.version} (IngestFeedbackRequest.edges_for_version), never the node's own"
                    )
                if len(feature.counts) != len(feature.bin_edges) + 1:
                    raise InvalidArgument("a window summary has one count more than bin edges, per feature")
        events = []
        for kind, test, features in (
            (M.DRIFT_KIND_DATA, self.data_summaries, summary.features),
            (M.DRIFT_KIND_PREDICTION, self.prediction_summaries, summary.outputs),
        ):
            alarm = test.update(features)
            if alarm is not None:
                event = self._note(kind, alarm, HOLD_WINDOWS * alarm.window)
                if event is not None:
                    events.append(event)
        return events

    def learn(self, labeled: list[Labeled]) -> list[monitor_pb2.DriftEvent]:
        """Matched labels of this version's predictions (in order); returns performance events
        and keeps the change the latest of them dates (`change`)."""
        labeled = [x for x in labeled if x.model_version == self.context.version]
        if not labeled:
            return []
        return self.learn_errors(self._outcomes.errors(labeled), labeled[0].number)

    def learn_errors(self, errors: np.ndarray, first_number: int) -> list[monitor_pb2.DriftEvent]:
        """Outcomes (1.0: wrong) of this version's labeled predictions, in order, the first of
        them matched-label number `first_number`: what `learn` makes of labels, and what a
        STRICT deployment's node sends instead of them."""
        if not errors.size:
            return []
        if not self.labels_seen:
            self.label_base = first_number - 1
        self._recent_errors = (self._recent_errors + errors.tolist())[-1024:]
        events = []
        for alarm in self.performance.update(errors):  # alarm.sample counts this version's labels
            events.append(self._event(M.DRIFT_KIND_PERFORMANCE, alarm, alarm.sample))
            # the alarm's window is where the error rate rose: the change is at its start
            self.change = (self.label_base + max(alarm.sample - alarm.window, 0), events[-1].id)
        self.labels_seen = self.performance.samples
        return events

    def recent_performance(self) -> float:
        """Accuracy (classification) or the share of residuals within the baseline's 90th
        percentile (regression) over the recent labels; NaN before any."""
        return 1.0 - float(np.mean(self._recent_errors)) if self._recent_errors else float("nan")

    def _event(self, kind: monitor_pb2.DriftKind, alarm: Alarm, seen: int) -> monitor_pb2.DriftEvent:
        return M.DriftEvent(
            id=f"e-{uuid.uuid4().hex[:12]}",
            deployment_id=self.deployment_id,
            model_version=self.context.version,
            kind=kind,
            features=list(alarm.features),
            statistic=alarm.statistic,
            value=alarm.value,
            threshold=alarm.threshold,
            window_start_sample=max(seen - alarm.window + 1, 1),
            window_end_sample=seen,
            time=_stamp(),
        )

    def report(self, labels_total: int) -> monitor_pb2.DriftReport:
        if self.strict:  # tested from window histograms
            scores = {name: (value, critical) for name, (value, critical) in self.data_summaries.last_scores.items()}
            statistic = "chi2-histogram"
        else:  # the inputs are one numeric tensor: every feature is tested on its mean
            scores = {name: (value, self.data.threshold) for name, value in self.data.last_scores.items()}
            statistic = "mean-z"
        features = [self._feature_drift(name, statistic, v, limit) for name, (v, limit) in scores.items()]
        return M.DriftReport(
            deployment_id=self.deployment_id,
            model_version=self.context.version,
            samples_seen=self.samples_seen + self.data.waiting,
            samples_waiting=self.data.waiting,
            labels_seen=labels_total,
            features=features,
            recent_performance=self.recent_performance(),
            retraining_unavailable_reason=self.retraining_unavailable(),
            drift_scans_unavailable_reason=self.scans_unavailable(),
        )

    def _feature_drift(self, name: str, statistic: str, value: float, limit: float) -> monitor_pb2.FeatureDrift:
        """A feature over its threshold now, or in a drift that goes on (the scan restarted at
        its last alarm, so its value alone would say no drift while the data is shifted)."""
        shown = M.FeatureDrift(feature=name, statistic=statistic, value=value, threshold=limit, drifted=value > limit)
        drift = self._drifts.get((M.DRIFT_KIND_DATA, name))
        if drift is not None and drift.going_on(self.samples_seen):
            shown.drifted = True
            shown.first_seen_sample = drift.first_sample
            shown.first_seen.CopyFrom(drift.first_time)
        return shown

    def retraining_unavailable(self) -> str:
        if not self.context.recipe.steps:
            return "the model has no training recipe in the registry"
        if not self.policy.auto_retrain:
            return "auto_retrain is off in the policy"
        epsilon, budget = self.policy.privacy_epsilon, self.policy.privacy_budget
        if (epsilon or self.policy.federation) and not self.strict:
            return OPEN_NOT_PRIVATE.format(self.deployment_id)
        if self.policy.federation and (problem := federated_recipe_problem(self.context.recipe)):
            return f"federation is set, but the recipe cannot be retrained federated: {problem}"
        if epsilon and (problem := private_recipe_problem(self.context.recipe)):
            return f"privacy_epsilon is set, but the recipe cannot be fitted with differential privacy: {problem}"
        return budget_refusal(self.privacy_spent, epsilon, budget) if epsilon else ""
