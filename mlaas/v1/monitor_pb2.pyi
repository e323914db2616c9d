import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from mlaas.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DriftKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DRIFT_KIND_UNSPECIFIED: _ClassVar[DriftKind]
    DRIFT_KIND_DATA: _ClassVar[DriftKind]
    DRIFT_KIND_PREDICTION: _ClassVar[DriftKind]
    DRIFT_KIND_PERFORMANCE: _ClassVar[DriftKind]

class RetrainingState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RETRAINING_STATE_UNSPECIFIED: _ClassVar[RetrainingState]
    RETRAINING_STATE_PENDING: _ClassVar[RetrainingState]
    RETRAINING_STATE_TRAINING: _ClassVar[RetrainingState]
    RETRAINING_STATE_EVALUATING: _ClassVar[RetrainingState]
    RETRAINING_STATE_ROLLED_OUT: _ClassVar[RetrainingState]
    RETRAINING_STATE_REJECTED: _ClassVar[RetrainingState]
    RETRAINING_STATE_FAILED: _ClassVar[RetrainingState]
    RETRAINING_STATE_IN_TRIAL: _ClassVar[RetrainingState]
DRIFT_KIND_UNSPECIFIED: DriftKind
DRIFT_KIND_DATA: DriftKind
DRIFT_KIND_PREDICTION: DriftKind
DRIFT_KIND_PERFORMANCE: DriftKind
RETRAINING_STATE_UNSPECIFIED: RetrainingState
RETRAINING_STATE_PENDING: RetrainingState
RETRAINING_STATE_TRAINING: RetrainingState
RETRAINING_STATE_EVALUATING: RetrainingState
RETRAINING_STATE_ROLLED_OUT: RetrainingState
RETRAINING_STATE_REJECTED: RetrainingState
RETRAINING_STATE_FAILED: RetrainingState
RETRAINING_STATE_IN_TRIAL: RetrainingState

class RawTensor(_message.Message):
    __slots__ = ("name", "datatype", "shape", "data")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DATATYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    name: str
    datatype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    data: bytes
    def __init__(self, name: _Optional[str] = ..., datatype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., data: _Optional[bytes] = ...) -> None: ...

class InferenceRecord(_message.Message):
    __slots__ = ("request_ids", "model_version", "inputs", "outputs", "time", "shadow_model_version", "shadow_outputs")
    REQUEST_IDS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    SHADOW_MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    SHADOW_OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    request_ids: _containers.RepeatedScalarFieldContainer[str]
    model_version: int
    inputs: _containers.RepeatedCompositeFieldContainer[RawTensor]
    outputs: _containers.RepeatedCompositeFieldContainer[RawTensor]
    time: _timestamp_pb2.Timestamp
    shadow_model_version: int
    shadow_outputs: _containers.RepeatedCompositeFieldContainer[RawTensor]
    def __init__(self, request_ids: _Optional[_Iterable[str]] = ..., model_version: _Optional[int] = ..., inputs: _Optional[_Iterable[_Union[RawTensor, _Mapping]]] = ..., outputs: _Optional[_Iterable[_Union[RawTensor, _Mapping]]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., shadow_model_version: _Optional[int] = ..., shadow_outputs: _Optional[_Iterable[_Union[RawTensor, _Mapping]]] = ...) -> None: ...

class FeatureSummary(_message.Message):
    __slots__ = ("feature_index", "bin_edges", "counts", "n", "mean", "variance")
    FEATURE_INDEX_FIELD_NUMBER: _ClassVar[int]
    BIN_EDGES_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    N_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    VARIANCE_FIELD_NUMBER: _ClassVar[int]
    feature_index: int
    bin_edges: _containers.RepeatedScalarFieldContainer[float]
    counts: _containers.RepeatedScalarFieldContainer[int]
    n: int
    mean: float
    variance: float
    def __init__(self, feature_index: _Optional[int] = ..., bin_edges: _Optional[_Iterable[float]] = ..., counts: _Optional[_Iterable[int]] = ..., n: _Optional[int] = ..., mean: _Optional[float] = ..., variance: _Optional[float] = ...) -> None: ...

class WindowSummary(_message.Message):
    __slots__ = ("model_version", "window_start", "window_end", "features", "outputs")
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    WINDOW_START_FIELD_NUMBER: _ClassVar[int]
    WINDOW_END_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    model_version: int
    window_start: _timestamp_pb2.Timestamp
    window_end: _timestamp_pb2.Timestamp
    features: _containers.RepeatedCompositeFieldContainer[FeatureSummary]
    outputs: _containers.RepeatedCompositeFieldContainer[FeatureSummary]
    def __init__(self, model_version: _Optional[int] = ..., window_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., window_end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., features: _Optional[_Iterable[_Union[FeatureSummary, _Mapping]]] = ..., outputs: _Optional[_Iterable[_Union[FeatureSummary, _Mapping]]] = ...) -> None: ...

class IngestFeedbackRequest(_message.Message):
    __slots__ = ("deployment_id", "records", "summaries", "dropped", "model_name", "label_summaries", "edges_for_version")
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    SUMMARIES_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    LABEL_SUMMARIES_FIELD_NUMBER: _ClassVar[int]
    EDGES_FOR_VERSION_FIELD_NUMBER: _ClassVar[int]
    deployment_id: str
    records: _containers.RepeatedCompositeFieldContainer[InferenceRecord]
    summaries: _containers.RepeatedCompositeFieldContainer[WindowSummary]
    dropped: int
    model_name: str
    label_summaries: _containers.RepeatedCompositeFieldContainer[LabelSummary]
    edges_for_version: int
    def __init__(self, deployment_id: _Optional[str] = ..., records: _Optional[_Iterable[_Union[InferenceRecord, _Mapping]]] = ..., summaries: _Optional[_Iterable[_Union[WindowSummary, _Mapping]]] = ..., dropped: _Optional[int] = ..., model_name: _Optional[str] = ..., label_summaries: _Optional[_Iterable[_Union[LabelSummary, _Mapping]]] = ..., edges_for_version: _Optional[int] = ...) -> None: ...

class SummaryEdges(_message.Message):
    __slots__ = ("model_version", "features", "outputs")
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    model_version: int
    features: _containers.RepeatedCompositeFieldContainer[BinEdges]
    outputs: _containers.RepeatedCompositeFieldContainer[BinEdges]
    def __init__(self, model_version: _Optional[int] = ..., features: _Optional[_Iterable[_Union[BinEdges, _Mapping]]] = ..., outputs: _Optional[_Iterable[_Union[BinEdges, _Mapping]]] = ...) -> None: ...

class BinEdges(_message.Message):
    __slots__ = ("edges",)
    EDGES_FIELD_NUMBER: _ClassVar[int]
    edges: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, edges: _Optional[_Iterable[float]] = ...) -> None: ...

class LabelSummary(_message.Message):
    __slots__ = ("model_version", "first_label", "labels", "errors", "trial")
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    FIRST_LABEL_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    TRIAL_FIELD_NUMBER: _ClassVar[int]
    model_version: int
    first_label: int
    labels: int
    errors: int
    trial: TrialCount
    def __init__(self, model_version: _Optional[int] = ..., first_label: _Optional[int] = ..., labels: _Optional[int] = ..., errors: _Optional[int] = ..., trial: _Optional[_Union[TrialCount, _Mapping]] = ...) -> None: ...

class TrialCount(_message.Message):
    __slots__ = ("challenger_version", "labels", "wins", "losses")
    CHALLENGER_VERSION_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    WINS_FIELD_NUMBER: _ClassVar[int]
    LOSSES_FIELD_NUMBER: _ClassVar[int]
    challenger_version: int
    labels: int
    wins: int
    losses: int
    def __init__(self, challenger_version: _Optional[int] = ..., labels: _Optional[int] = ..., wins: _Optional[int] = ..., losses: _Optional[int] = ...) -> None: ...

class IngestFeedbackResponse(_message.Message):
    __slots__ = ("accepted_rows", "summary_edges")
    ACCEPTED_ROWS_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_EDGES_FIELD_NUMBER: _ClassVar[int]
    accepted_rows: int
    summary_edges: SummaryEdges
    def __init__(self, accepted_rows: _Optional[int] = ..., summary_edges: _Optional[_Union[SummaryEdges, _Mapping]] = ...) -> None: ...

class Label(_message.Message):
    __slots__ = ("request_id", "class_label", "target")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CLASS_LABEL_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    class_label: str
    target: float
    def __init__(self, request_id: _Optional[str] = ..., class_label: _Optional[str] = ..., target: _Optional[float] = ...) -> None: ...

class ReportLabelsRequest(_message.Message):
    __slots__ = ("deployment_id", "labels")
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    deployment_id: str
    labels: _containers.RepeatedCompositeFieldContainer[Label]
    def __init__(self, deployment_id: _Optional[str] = ..., labels: _Optional[_Iterable[_Union[Label, _Mapping]]] = ...) -> None: ...

class ReportLabelsResponse(_message.Message):
    __slots__ = ("accepted", "unmatched")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    UNMATCHED_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    unmatched: int
    def __init__(self, accepted: _Optional[int] = ..., unmatched: _Optional[int] = ...) -> None: ...

class ReportLabelBatchRequest(_message.Message):
    __slots__ = ("deployment_id", "labels")
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    deployment_id: str
    labels: _containers.RepeatedCompositeFieldContainer[Label]
    def __init__(self, deployment_id: _Optional[str] = ..., labels: _Optional[_Iterable[_Union[Label, _Mapping]]] = ...) -> None: ...

class ReportLabelBatchResponse(_message.Message):
    __slots__ = ("accepted", "unmatched")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    UNMATCHED_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    unmatched: int
    def __init__(self, accepted: _Optional[int] = ..., unmatched: _Optional[int] = ...) -> None: ...

class DriftEvent(_message.Message):
    __slots__ = ("id", "deployment_id", "model_version", "kind", "features", "statistic", "value", "threshold", "window_start_sample", "window_end_sample", "time")
    ID_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    STATISTIC_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    WINDOW_START_SAMPLE_FIELD_NUMBER: _ClassVar[int]
    WINDOW_END_SAMPLE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    id: str
    deployment_id: str
    model_version: int
    kind: DriftKind
    features: _containers.RepeatedScalarFieldContainer[str]
    statistic: str
    value: float
    threshold: float
    window_start_sample: int
    window_end_sample: int
    time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., deployment_id: _Optional[str] = ..., model_version: _Optional[int] = ..., kind: _Optional[_Union[DriftKind, str]] = ..., features: _Optional[_Iterable[str]] = ..., statistic: _Optional[str] = ..., value: _Optional[float] = ..., threshold: _Optional[float] = ..., window_start_sample: _Optional[int] = ..., window_end_sample: _Optional[int] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class FeatureDrift(_message.Message):
    __slots__ = ("feature", "statistic", "value", "threshold", "drifted", "first_seen_sample", "first_seen")
    FEATURE_FIELD_NUMBER: _ClassVar[int]
    STATISTIC_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    DRIFTED_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEEN_SAMPLE_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEEN_FIELD_NUMBER: _ClassVar[int]
    feature: str
    statistic: str
    value: float
    threshold: float
    drifted: bool
    first_seen_sample: int
    first_seen: _timestamp_pb2.Timestamp
    def __init__(self, feature: _Optional[str] = ..., statistic: _Optional[str] = ..., value: _Optional[float] = ..., threshold: _Optional[float] = ..., drifted: _Optional[bool] = ..., first_seen_sample: _Optional[int] = ..., first_seen: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class DriftReport(_message.Message):
    __slots__ = ("deployment_id", "model_version", "samples_seen", "labels_seen", "features", "recent_events", "recent_performance", "retraining_unavailable_reason", "feedback_dropped", "trial", "samples_waiting", "drift_scans_unavailable_reason")
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_SEEN_FIELD_NUMBER: _ClassVar[int]
    LABELS_SEEN_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    RECENT_EVENTS_FIELD_NUMBER: _ClassVar[int]
    RECENT_PERFORMANCE_FIELD_NUMBER: _ClassVar[int]
    RETRAINING_UNAVAILABLE_REASON_FIELD_NUMBER: _ClassVar[int]
    FEEDBACK_DROPPED_FIELD_NUMBER: _ClassVar[int]
    TRIAL_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_WAITING_FIELD_NUMBER: _ClassVar[int]
    DRIFT_SCANS_UNAVAILABLE_REASON_FIELD_NUMBER: _ClassVar[int]
    deployment_id: str
    model_version: int
    samples_seen: int
    labels_seen: int
    features: _containers.RepeatedCompositeFieldContainer[FeatureDrift]
    recent_events: _containers.RepeatedCompositeFieldContainer[DriftEvent]
    recent_performance: float
    retraining_unavailable_reason: str
    feedback_dropped: int
    trial: TrialJudgement
    samples_waiting: int
    drift_scans_unavailable_reason: str
    def __init__(self, deployment_id: _Optional[str] = ..., model_version: _Optional[int] = ..., samples_seen: _Optional[int] = ..., labels_seen: _Optional[int] = ..., features: _Optional[_Iterable[_Union[FeatureDrift, _Mapping]]] = ..., recent_events: _Optional[_Iterable[_Union[DriftEvent, _Mapping]]] = ..., recent_performance: _Optional[float] = ..., retraining_unavailable_reason: _Optional[str] = ..., feedback_dropped: _Optional[int] = ..., trial: _Optional[_Union[TrialJudgement, _Mapping]] = ..., samples_waiting: _Optional[int] = ..., drift_scans_unavailable_reason: _Optional[str] = ...) -> None: ...

class TrialJudgement(_message.Message):
    __slots__ = ("champion_version", "challenger_version", "labels", "wins", "losses", "outcome")
    CHAMPION_VERSION_FIELD_NUMBER: _ClassVar[int]
    CHALLENGER_VERSION_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    WINS_FIELD_NUMBER: _ClassVar[int]
    LOSSES_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    champion_version: int
    challenger_version: int
    labels: int
    wins: int
    losses: int
    outcome: str
    def __init__(self, champion_version: _Optional[int] = ..., challenger_version: _Optional[int] = ..., labels: _Optional[int] = ..., wins: _Optional[int] = ..., losses: _Optional[int] = ..., outcome: _Optional[str] = ...) -> None: ...

class GetDriftReportRequest(_message.Message):
    __slots__ = ("deployment_id",)
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    deployment_id: str
    def __init__(self, deployment_id: _Optional[str] = ...) -> None: ...

class GetDriftReportResponse(_message.Message):
    __slots__ = ("report",)
    REPORT_FIELD_NUMBER: _ClassVar[int]
    report: DriftReport
    def __init__(self, report: _Optional[_Union[DriftReport, _Mapping]] = ...) -> None: ...

class ListDriftEventsRequest(_message.Message):
    __slots__ = ("deployment_id", "page_size", "page_token")
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    deployment_id: str
    page_size: int
    page_token: str
    def __init__(self, deployment_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListDriftEventsResponse(_message.Message):
    __slots__ = ("events", "next_page_token")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[DriftEvent]
    next_page_token: str
    def __init__(self, events: _Optional[_Iterable[_Union[DriftEvent, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class WatchDriftRequest(_message.Message):
    __slots__ = ("deployment_id",)
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    deployment_id: str
    def __init__(self, deployment_id: _Optional[str] = ...) -> None: ...

class WatchDriftResponse(_message.Message):
    __slots__ = ("event",)
    EVENT_FIELD_NUMBER: _ClassVar[int]
    event: DriftEvent
    def __init__(self, event: _Optional[_Union[DriftEvent, _Mapping]] = ...) -> None: ...

class MonitorPolicy(_message.Message):
    __slots__ = ("window_size", "false_alarms_per_100k", "auto_retrain", "min_labels", "first_round_labels", "cooldown_labels", "challenger_confidence", "performance_expected_run_length", "privacy_epsilon", "privacy_budget", "federation", "trial_labels", "shadow_retrained")
    WINDOW_SIZE_FIELD_NUMBER: _ClassVar[int]
    FALSE_ALARMS_PER_100K_FIELD_NUMBER: _ClassVar[int]
    AUTO_RETRAIN_FIELD_NUMBER: _ClassVar[int]
    MIN_LABELS_FIELD_NUMBER: _ClassVar[int]
    FIRST_ROUND_LABELS_FIELD_NUMBER: _ClassVar[int]
    COOLDOWN_LABELS_FIELD_NUMBER: _ClassVar[int]
    CHALLENGER_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    PERFORMANCE_EXPECTED_RUN_LENGTH_FIELD_NUMBER: _ClassVar[int]
    PRIVACY_EPSILON_FIELD_NUMBER: _ClassVar[int]
    PRIVACY_BUDGET_FIELD_NUMBER: _ClassVar[int]
    FEDERATION_FIELD_NUMBER: _ClassVar[int]
    TRIAL_LABELS_FIELD_NUMBER: _ClassVar[int]
    SHADOW_RETRAINED_FIELD_NUMBER: _ClassVar[int]
    window_size: int
    false_alarms_per_100k: float
    auto_retrain: bool
    min_labels: int
    first_round_labels: int
    cooldown_labels: int
    challenger_confidence: float
    performance_expected_run_length: int
    privacy_epsilon: float
    privacy_budget: float
    federation: str
    trial_labels: int
    shadow_retrained: bool
    def __init__(self, window_size: _Optional[int] = ..., false_alarms_per_100k: _Optional[float] = ..., auto_retrain: _Optional[bool] = ..., min_labels: _Optional[int] = ..., first_round_labels: _Optional[int] = ..., cooldown_labels: _Optional[int] = ..., challenger_confidence: _Optional[float] = ..., performance_expected_run_length: _Optional[int] = ..., privacy_epsilon: _Optional[float] = ..., privacy_budget: _Optional[float] = ..., federation: _Optional[str] = ..., trial_labels: _Optional[int] = ..., shadow_retrained: _Optional[bool] = ...) -> None: ...

class SetPolicyRequest(_message.Message):
    __slots__ = ("deployment_id", "policy")
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    deployment_id: str
    policy: MonitorPolicy
    def __init__(self, deployment_id: _Optional[str] = ..., policy: _Optional[_Union[MonitorPolicy, _Mapping]] = ...) -> None: ...

class SetPolicyResponse(_message.Message):
    __slots__ = ("policy",)
    POLICY_FIELD_NUMBER: _ClassVar[int]
    policy: MonitorPolicy
    def __init__(self, policy: _Optional[_Union[MonitorPolicy, _Mapping]] = ...) -> None: ...

class GetPolicyRequest(_message.Message):
    __slots__ = ("deployment_id",)
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    deployment_id: str
    def __init__(self, deployment_id: _Optional[str] = ...) -> None: ...

class GetPolicyResponse(_message.Message):
    __slots__ = ("policy",)
    POLICY_FIELD_NUMBER: _ClassVar[int]
    policy: MonitorPolicy
    def __init__(self, policy: _Optional[_Union[MonitorPolicy, _Mapping]] = ...) -> None: ...

class Retraining(_message.Message):
    __slots__ = ("id", "deployment_id", "trigger_event_id", "parent_version", "challenger_version", "state", "champion_metrics", "challenger_metrics", "reason", "started_at", "finished_at", "trained_on", "training_samples", "epsilon_spent", "federated_deployments", "stages")
    ID_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    PARENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    CHALLENGER_VERSION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CHAMPION_METRICS_FIELD_NUMBER: _ClassVar[int]
    CHALLENGER_METRICS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    TRAINED_ON_FIELD_NUMBER: _ClassVar[int]
    TRAINING_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    EPSILON_SPENT_FIELD_NUMBER: _ClassVar[int]
    FEDERATED_DEPLOYMENTS_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    id: str
    deployment_id: str
    trigger_event_id: str
    parent_version: int
    challenger_version: int
    state: RetrainingState
    champion_metrics: _containers.RepeatedCompositeFieldContainer[_types_pb2.Metric]
    challenger_metrics: _containers.RepeatedCompositeFieldContainer[_types_pb2.Metric]
    reason: str
    started_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    trained_on: str
    training_samples: int
    epsilon_spent: float
    federated_deployments: _containers.RepeatedScalarFieldContainer[str]
    stages: _containers.RepeatedCompositeFieldContainer[_types_pb2.StageTime]
    def __init__(self, id: _Optional[str] = ..., deployment_id: _Optional[str] = ..., trigger_event_id: _Optional[str] = ..., parent_version: _Optional[int] = ..., challenger_version: _Optional[int] = ..., state: _Optional[_Union[RetrainingState, str]] = ..., champion_metrics: _Optional[_Iterable[_Union[_types_pb2.Metric, _Mapping]]] = ..., challenger_metrics: _Optional[_Iterable[_Union[_types_pb2.Metric, _Mapping]]] = ..., reason: _Optional[str] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., trained_on: _Optional[str] = ..., training_samples: _Optional[int] = ..., epsilon_spent: _Optional[float] = ..., federated_deployments: _Optional[_Iterable[str]] = ..., stages: _Optional[_Iterable[_Union[_types_pb2.StageTime, _Mapping]]] = ...) -> None: ...

class ListRetrainingsRequest(_message.Message):
    __slots__ = ("deployment_id",)
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    deployment_id: str
    def __init__(self, deployment_id: _Optional[str] = ...) -> None: ...

class ListRetrainingsResponse(_message.Message):
    __slots__ = ("retrainings",)
    RETRAININGS_FIELD_NUMBER: _ClassVar[int]
    retrainings: _containers.RepeatedCompositeFieldContainer[Retraining]
    def __init__(self, retrainings: _Optional[_Iterable[_Union[Retraining, _Mapping]]] = ...) -> None: ...

class WatchRetrainingRequest(_message.Message):
    __slots__ = ("deployment_id",)
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    deployment_id: str
    def __init__(self, deployment_id: _Optional[str] = ...) -> None: ...

class WatchRetrainingResponse(_message.Message):
    __slots__ = ("retraining",)
    RETRAINING_FIELD_NUMBER: _ClassVar[int]
    retraining: Retraining
    def __init__(self, retraining: _Optional[_Union[Retraining, _Mapping]] = ...) -> None: ...
