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

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    JOB_STATE_RUNNING: _ClassVar[JobState]
    JOB_STATE_SUCCEEDED: _ClassVar[JobState]
    JOB_STATE_FAILED: _ClassVar[JobState]
    JOB_STATE_CANCELLED: _ClassVar[JobState]
    JOB_STATE_PENDING: _ClassVar[JobState]

class TrainingOutput(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRAINING_OUTPUT_UNSPECIFIED: _ClassVar[TrainingOutput]
    TRAINING_OUTPUT_MODEL: _ClassVar[TrainingOutput]
    TRAINING_OUTPUT_PARAMETERS: _ClassVar[TrainingOutput]
    TRAINING_OUTPUT_PREDICTIONS: _ClassVar[TrainingOutput]

class PlacementMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PLACEMENT_MODE_UNSPECIFIED: _ClassVar[PlacementMode]
    PLACEMENT_MODE_OPEN: _ClassVar[PlacementMode]
    PLACEMENT_MODE_STRICT: _ClassVar[PlacementMode]

class DeploymentState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DEPLOYMENT_STATE_UNSPECIFIED: _ClassVar[DeploymentState]
    DEPLOYMENT_STATE_QUEUED: _ClassVar[DeploymentState]
    DEPLOYMENT_STATE_PLACING: _ClassVar[DeploymentState]
    DEPLOYMENT_STATE_STARTING: _ClassVar[DeploymentState]
    DEPLOYMENT_STATE_READY: _ClassVar[DeploymentState]
    DEPLOYMENT_STATE_FAILED: _ClassVar[DeploymentState]
    DEPLOYMENT_STATE_CACHED: _ClassVar[DeploymentState]
    DEPLOYMENT_STATE_DESTROYED: _ClassVar[DeploymentState]
    DEPLOYMENT_STATE_UPDATING: _ClassVar[DeploymentState]

class TrialMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRIAL_MODE_UNSPECIFIED: _ClassVar[TrialMode]
    TRIAL_MODE_SHADOW: _ClassVar[TrialMode]
    TRIAL_MODE_CANARY: _ClassVar[TrialMode]

class TrialEnd(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRIAL_END_UNSPECIFIED: _ClassVar[TrialEnd]
    TRIAL_END_PROMOTE: _ClassVar[TrialEnd]
    TRIAL_END_ABORT: _ClassVar[TrialEnd]
JOB_STATE_UNSPECIFIED: JobState
JOB_STATE_RUNNING: JobState
JOB_STATE_SUCCEEDED: JobState
JOB_STATE_FAILED: JobState
JOB_STATE_CANCELLED: JobState
JOB_STATE_PENDING: JobState
TRAINING_OUTPUT_UNSPECIFIED: TrainingOutput
TRAINING_OUTPUT_MODEL: TrainingOutput
TRAINING_OUTPUT_PARAMETERS: TrainingOutput
TRAINING_OUTPUT_PREDICTIONS: TrainingOutput
PLACEMENT_MODE_UNSPECIFIED: PlacementMode
PLACEMENT_MODE_OPEN: PlacementMode
PLACEMENT_MODE_STRICT: PlacementMode
DEPLOYMENT_STATE_UNSPECIFIED: DeploymentState
DEPLOYMENT_STATE_QUEUED: DeploymentState
DEPLOYMENT_STATE_PLACING: DeploymentState
DEPLOYMENT_STATE_STARTING: DeploymentState
DEPLOYMENT_STATE_READY: DeploymentState
DEPLOYMENT_STATE_FAILED: DeploymentState
DEPLOYMENT_STATE_CACHED: DeploymentState
DEPLOYMENT_STATE_DESTROYED: DeploymentState
DEPLOYMENT_STATE_UPDATING: DeploymentState
TRIAL_MODE_UNSPECIFIED: TrialMode
TRIAL_MODE_SHADOW: TrialMode
TRIAL_MODE_CANARY: TrialMode
TRIAL_END_UNSPECIFIED: TrialEnd
TRIAL_END_PROMOTE: TrialEnd
TRIAL_END_ABORT: TrialEnd

class TrainingJob(_message.Message):
    __slots__ = ("id", "model", "input_uri", "output_uri", "node", "resources", "state", "reason", "tenant", "created_at", "finished_at", "handle", "deadline", "node_round", "round_result", "stages")
    ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INPUT_URI_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_URI_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    NODE_ROUND_FIELD_NUMBER: _ClassVar[int]
    ROUND_RESULT_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    id: str
    model: _types_pb2.ModelRef
    input_uri: str
    output_uri: str
    node: str
    resources: _types_pb2.Resources
    state: JobState
    reason: str
    tenant: str
    created_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    handle: str
    deadline: _timestamp_pb2.Timestamp
    node_round: NodeRound
    round_result: RoundResult
    stages: _containers.RepeatedCompositeFieldContainer[_types_pb2.StageTime]
    def __init__(self, id: _Optional[str] = ..., model: _Optional[_Union[_types_pb2.ModelRef, _Mapping]] = ..., input_uri: _Optional[str] = ..., output_uri: _Optional[str] = ..., node: _Optional[str] = ..., resources: _Optional[_Union[_types_pb2.Resources, _Mapping]] = ..., state: _Optional[_Union[JobState, str]] = ..., reason: _Optional[str] = ..., tenant: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., handle: _Optional[str] = ..., deadline: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., node_round: _Optional[_Union[NodeRound, _Mapping]] = ..., round_result: _Optional[_Union[RoundResult, _Mapping]] = ..., stages: _Optional[_Iterable[_Union[_types_pb2.StageTime, _Mapping]]] = ...) -> None: ...

class NodeRound(_message.Message):
    __slots__ = ("deployment_id", "since_label", "unseen_after", "confidence", "follow_up", "epsilon", "until_label", "parameters_only", "judge_candidate")
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    SINCE_LABEL_FIELD_NUMBER: _ClassVar[int]
    UNSEEN_AFTER_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_UP_FIELD_NUMBER: _ClassVar[int]
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    UNTIL_LABEL_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_ONLY_FIELD_NUMBER: _ClassVar[int]
    JUDGE_CANDIDATE_FIELD_NUMBER: _ClassVar[int]
    deployment_id: str
    since_label: int
    unseen_after: int
    confidence: float
    follow_up: bool
    epsilon: float
    until_label: int
    parameters_only: bool
    judge_candidate: bool
    def __init__(self, deployment_id: _Optional[str] = ..., since_label: _Optional[int] = ..., unseen_after: _Optional[int] = ..., confidence: _Optional[float] = ..., follow_up: _Optional[bool] = ..., epsilon: _Optional[float] = ..., until_label: _Optional[int] = ..., parameters_only: _Optional[bool] = ..., judge_candidate: _Optional[bool] = ...) -> None: ...

class RoundResult(_message.Message):
    __slots__ = ("training_samples", "held_out_samples", "champion", "challenger", "better", "reason", "epsilon_spent", "until_label", "wins", "losses", "parameters_uri")
    TRAINING_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    HELD_OUT_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    CHAMPION_FIELD_NUMBER: _ClassVar[int]
    CHALLENGER_FIELD_NUMBER: _ClassVar[int]
    BETTER_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    EPSILON_SPENT_FIELD_NUMBER: _ClassVar[int]
    UNTIL_LABEL_FIELD_NUMBER: _ClassVar[int]
    WINS_FIELD_NUMBER: _ClassVar[int]
    LOSSES_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_URI_FIELD_NUMBER: _ClassVar[int]
    training_samples: int
    held_out_samples: int
    champion: _types_pb2.Metric
    challenger: _types_pb2.Metric
    better: bool
    reason: str
    epsilon_spent: float
    until_label: int
    wins: int
    losses: int
    parameters_uri: str
    def __init__(self, training_samples: _Optional[int] = ..., held_out_samples: _Optional[int] = ..., champion: _Optional[_Union[_types_pb2.Metric, _Mapping]] = ..., challenger: _Optional[_Union[_types_pb2.Metric, _Mapping]] = ..., better: _Optional[bool] = ..., reason: _Optional[str] = ..., epsilon_spent: _Optional[float] = ..., until_label: _Optional[int] = ..., wins: _Optional[int] = ..., losses: _Optional[int] = ..., parameters_uri: _Optional[str] = ...) -> None: ...

class RunTrainingJobRequest(_message.Message):
    __slots__ = ("model", "input_uri", "output_uri", "node_round", "input_data")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INPUT_URI_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_URI_FIELD_NUMBER: _ClassVar[int]
    NODE_ROUND_FIELD_NUMBER: _ClassVar[int]
    INPUT_DATA_FIELD_NUMBER: _ClassVar[int]
    model: _types_pb2.ModelRef
    input_uri: str
    output_uri: str
    node_round: NodeRound
    input_data: bytes
    def __init__(self, model: _Optional[_Union[_types_pb2.ModelRef, _Mapping]] = ..., input_uri: _Optional[str] = ..., output_uri: _Optional[str] = ..., node_round: _Optional[_Union[NodeRound, _Mapping]] = ..., input_data: _Optional[bytes] = ...) -> None: ...

class RunTrainingJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: TrainingJob
    def __init__(self, job: _Optional[_Union[TrainingJob, _Mapping]] = ...) -> None: ...

class GetTrainingJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class GetTrainingJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: TrainingJob
    def __init__(self, job: _Optional[_Union[TrainingJob, _Mapping]] = ...) -> None: ...

class CancelTrainingJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class CancelTrainingJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: TrainingJob
    def __init__(self, job: _Optional[_Union[TrainingJob, _Mapping]] = ...) -> None: ...

class ReadTrainingJobOutputRequest(_message.Message):
    __slots__ = ("job_id", "output")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    output: TrainingOutput
    def __init__(self, job_id: _Optional[str] = ..., output: _Optional[_Union[TrainingOutput, str]] = ...) -> None: ...

class ReadTrainingJobOutputResponse(_message.Message):
    __slots__ = ("chunk",)
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    chunk: bytes
    def __init__(self, chunk: _Optional[bytes] = ...) -> None: ...

class DeleteTrainingJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class DeleteTrainingJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: TrainingJob
    def __init__(self, job: _Optional[_Union[TrainingJob, _Mapping]] = ...) -> None: ...

class DeployRequest(_message.Message):
    __slots__ = ("model", "mode", "node", "replicas", "resources", "idempotency_key", "backend", "autoscaling")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    AUTOSCALING_FIELD_NUMBER: _ClassVar[int]
    model: _types_pb2.ModelRef
    mode: PlacementMode
    node: str
    replicas: int
    resources: _types_pb2.Resources
    idempotency_key: str
    backend: str
    autoscaling: AutoscalingPolicy
    def __init__(self, model: _Optional[_Union[_types_pb2.ModelRef, _Mapping]] = ..., mode: _Optional[_Union[PlacementMode, str]] = ..., node: _Optional[str] = ..., replicas: _Optional[int] = ..., resources: _Optional[_Union[_types_pb2.Resources, _Mapping]] = ..., idempotency_key: _Optional[str] = ..., backend: _Optional[str] = ..., autoscaling: _Optional[_Union[AutoscalingPolicy, _Mapping]] = ...) -> None: ...

class AutoscalingPolicy(_message.Message):
    __slots__ = ("min_replicas", "max_replicas", "target_inflight", "target_p99_ms", "scale_down_window_seconds")
    MIN_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    MAX_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    TARGET_INFLIGHT_FIELD_NUMBER: _ClassVar[int]
    TARGET_P99_MS_FIELD_NUMBER: _ClassVar[int]
    SCALE_DOWN_WINDOW_SECONDS_FIELD_NUMBER: _ClassVar[int]
    min_replicas: int
    max_replicas: int
    target_inflight: float
    target_p99_ms: float
    scale_down_window_seconds: float
    def __init__(self, min_replicas: _Optional[int] = ..., max_replicas: _Optional[int] = ..., target_inflight: _Optional[float] = ..., target_p99_ms: _Optional[float] = ..., scale_down_window_seconds: _Optional[float] = ...) -> None: ...

class DeployResponse(_message.Message):
    __slots__ = ("deployment", "lease_id")
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    deployment: Deployment
    lease_id: str
    def __init__(self, deployment: _Optional[_Union[Deployment, _Mapping]] = ..., lease_id: _Optional[str] = ...) -> None: ...

class Replica(_message.Message):
    __slots__ = ("id", "node", "endpoint", "ready", "restarts", "handle", "model_version", "http_endpoint", "bulk_endpoint", "trial_version")
    ID_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    RESTARTS_FIELD_NUMBER: _ClassVar[int]
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    HTTP_ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    BULK_ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    TRIAL_VERSION_FIELD_NUMBER: _ClassVar[int]
    id: str
    node: str
    endpoint: str
    ready: bool
    restarts: int
    handle: str
    model_version: int
    http_endpoint: str
    bulk_endpoint: str
    trial_version: int
    def __init__(self, id: _Optional[str] = ..., node: _Optional[str] = ..., endpoint: _Optional[str] = ..., ready: _Optional[bool] = ..., restarts: _Optional[int] = ..., handle: _Optional[str] = ..., model_version: _Optional[int] = ..., http_endpoint: _Optional[str] = ..., bulk_endpoint: _Optional[str] = ..., trial_version: _Optional[int] = ...) -> None: ...

class DeploymentEvent(_message.Message):
    __slots__ = ("state", "time", "detail")
    STATE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    state: DeploymentState
    time: _timestamp_pb2.Timestamp
    detail: str
    def __init__(self, state: _Optional[_Union[DeploymentState, str]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., detail: _Optional[str] = ...) -> None: ...

class Deployment(_message.Message):
    __slots__ = ("id", "model", "mode", "node", "replicas", "resources", "state", "reason", "replica_status", "endpoints", "tenant", "leases", "created_at", "updated_at", "backend", "http_endpoints", "bulk_endpoints", "trial", "privacy", "autoscaling", "activator_endpoint", "activator_http_endpoint")
    ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REPLICA_STATUS_FIELD_NUMBER: _ClassVar[int]
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    LEASES_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    HTTP_ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    BULK_ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    TRIAL_FIELD_NUMBER: _ClassVar[int]
    PRIVACY_FIELD_NUMBER: _ClassVar[int]
    AUTOSCALING_FIELD_NUMBER: _ClassVar[int]
    ACTIVATOR_ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    ACTIVATOR_HTTP_ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    id: str
    model: _types_pb2.ModelRef
    mode: PlacementMode
    node: str
    replicas: int
    resources: _types_pb2.Resources
    state: DeploymentState
    reason: str
    replica_status: _containers.RepeatedCompositeFieldContainer[Replica]
    endpoints: _containers.RepeatedScalarFieldContainer[str]
    tenant: str
    leases: int
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    backend: str
    http_endpoints: _containers.RepeatedScalarFieldContainer[str]
    bulk_endpoints: _containers.RepeatedScalarFieldContainer[str]
    trial: Trial
    privacy: PrivacyTerms
    autoscaling: AutoscalingPolicy
    activator_endpoint: str
    activator_http_endpoint: str
    def __init__(self, id: _Optional[str] = ..., model: _Optional[_Union[_types_pb2.ModelRef, _Mapping]] = ..., mode: _Optional[_Union[PlacementMode, str]] = ..., node: _Optional[str] = ..., replicas: _Optional[int] = ..., resources: _Optional[_Union[_types_pb2.Resources, _Mapping]] = ..., state: _Optional[_Union[DeploymentState, str]] = ..., reason: _Optional[str] = ..., replica_status: _Optional[_Iterable[_Union[Replica, _Mapping]]] = ..., endpoints: _Optional[_Iterable[str]] = ..., tenant: _Optional[str] = ..., leases: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., backend: _Optional[str] = ..., http_endpoints: _Optional[_Iterable[str]] = ..., bulk_endpoints: _Optional[_Iterable[str]] = ..., trial: _Optional[_Union[Trial, _Mapping]] = ..., privacy: _Optional[_Union[PrivacyTerms, _Mapping]] = ..., autoscaling: _Optional[_Union[AutoscalingPolicy, _Mapping]] = ..., activator_endpoint: _Optional[str] = ..., activator_http_endpoint: _Optional[str] = ...) -> None: ...

class PrivacyTerms(_message.Message):
    __slots__ = ("epsilon", "budget", "spent")
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    SPENT_FIELD_NUMBER: _ClassVar[int]
    epsilon: float
    budget: float
    spent: float
    def __init__(self, epsilon: _Optional[float] = ..., budget: _Optional[float] = ..., spent: _Optional[float] = ...) -> None: ...

class GetDeploymentRequest(_message.Message):
    __slots__ = ("deployment_id",)
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    deployment_id: str
    def __init__(self, deployment_id: _Optional[str] = ...) -> None: ...

class GetDeploymentResponse(_message.Message):
    __slots__ = ("deployment",)
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    deployment: Deployment
    def __init__(self, deployment: _Optional[_Union[Deployment, _Mapping]] = ...) -> None: ...

class ListDeploymentsRequest(_message.Message):
    __slots__ = ("model_name", "model_version", "states", "page_size", "page_token")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    model_version: int
    states: _containers.RepeatedScalarFieldContainer[DeploymentState]
    page_size: int
    page_token: str
    def __init__(self, model_name: _Optional[str] = ..., model_version: _Optional[int] = ..., states: _Optional[_Iterable[_Union[DeploymentState, str]]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListDeploymentsResponse(_message.Message):
    __slots__ = ("deployments", "next_page_token")
    DEPLOYMENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    deployments: _containers.RepeatedCompositeFieldContainer[Deployment]
    next_page_token: str
    def __init__(self, deployments: _Optional[_Iterable[_Union[Deployment, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class WatchDeploymentRequest(_message.Message):
    __slots__ = ("deployment_id",)
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    deployment_id: str
    def __init__(self, deployment_id: _Optional[str] = ...) -> None: ...

class WatchDeploymentResponse(_message.Message):
    __slots__ = ("event", "deployment")
    EVENT_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    event: DeploymentEvent
    deployment: Deployment
    def __init__(self, event: _Optional[_Union[DeploymentEvent, _Mapping]] = ..., deployment: _Optional[_Union[Deployment, _Mapping]] = ...) -> None: ...

class DecommissionRequest(_message.Message):
    __slots__ = ("deployment_id", "lease_id")
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    deployment_id: str
    lease_id: str
    def __init__(self, deployment_id: _Optional[str] = ..., lease_id: _Optional[str] = ...) -> None: ...

class DecommissionResponse(_message.Message):
    __slots__ = ("deployment",)
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    deployment: Deployment
    def __init__(self, deployment: _Optional[_Union[Deployment, _Mapping]] = ...) -> None: ...

class Node(_message.Message):
    __slots__ = ("name", "allocatable", "allocated", "free", "labels", "backend")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    ALLOCATABLE_FIELD_NUMBER: _ClassVar[int]
    ALLOCATED_FIELD_NUMBER: _ClassVar[int]
    FREE_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    name: str
    allocatable: _types_pb2.Resources
    allocated: _types_pb2.Resources
    free: _types_pb2.Resources
    labels: _containers.ScalarMap[str, str]
    backend: str
    def __init__(self, name: _Optional[str] = ..., allocatable: _Optional[_Union[_types_pb2.Resources, _Mapping]] = ..., allocated: _Optional[_Union[_types_pb2.Resources, _Mapping]] = ..., free: _Optional[_Union[_types_pb2.Resources, _Mapping]] = ..., labels: _Optional[_Mapping[str, str]] = ..., backend: _Optional[str] = ...) -> None: ...

class ListNodesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListNodesResponse(_message.Message):
    __slots__ = ("nodes",)
    NODES_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[Node]
    def __init__(self, nodes: _Optional[_Iterable[_Union[Node, _Mapping]]] = ...) -> None: ...

class ActivateDeploymentRequest(_message.Message):
    __slots__ = ("deployment_id",)
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    deployment_id: str
    def __init__(self, deployment_id: _Optional[str] = ...) -> None: ...

class ActivateDeploymentResponse(_message.Message):
    __slots__ = ("deployment",)
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    deployment: Deployment
    def __init__(self, deployment: _Optional[_Union[Deployment, _Mapping]] = ...) -> None: ...

class ScaleRequest(_message.Message):
    __slots__ = ("deployment_id", "replicas")
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    deployment_id: str
    replicas: int
    def __init__(self, deployment_id: _Optional[str] = ..., replicas: _Optional[int] = ...) -> None: ...

class ScaleResponse(_message.Message):
    __slots__ = ("deployment",)
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    deployment: Deployment
    def __init__(self, deployment: _Optional[_Union[Deployment, _Mapping]] = ...) -> None: ...

class UpdateDeploymentRequest(_message.Message):
    __slots__ = ("deployment_id", "model", "trial_mode", "canary_percent", "end_trial", "privacy", "trial_champion_version", "trial_challenger_version", "autoscaling", "clear_autoscaling")
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TRIAL_MODE_FIELD_NUMBER: _ClassVar[int]
    CANARY_PERCENT_FIELD_NUMBER: _ClassVar[int]
    END_TRIAL_FIELD_NUMBER: _ClassVar[int]
    PRIVACY_FIELD_NUMBER: _ClassVar[int]
    TRIAL_CHAMPION_VERSION_FIELD_NUMBER: _ClassVar[int]
    TRIAL_CHALLENGER_VERSION_FIELD_NUMBER: _ClassVar[int]
    AUTOSCALING_FIELD_NUMBER: _ClassVar[int]
    CLEAR_AUTOSCALING_FIELD_NUMBER: _ClassVar[int]
    deployment_id: str
    model: _types_pb2.ModelRef
    trial_mode: TrialMode
    canary_percent: float
    end_trial: TrialEnd
    privacy: PrivacyTerms
    trial_champion_version: int
    trial_challenger_version: int
    autoscaling: AutoscalingPolicy
    clear_autoscaling: bool
    def __init__(self, deployment_id: _Optional[str] = ..., model: _Optional[_Union[_types_pb2.ModelRef, _Mapping]] = ..., trial_mode: _Optional[_Union[TrialMode, str]] = ..., canary_percent: _Optional[float] = ..., end_trial: _Optional[_Union[TrialEnd, str]] = ..., privacy: _Optional[_Union[PrivacyTerms, _Mapping]] = ..., trial_champion_version: _Optional[int] = ..., trial_challenger_version: _Optional[int] = ..., autoscaling: _Optional[_Union[AutoscalingPolicy, _Mapping]] = ..., clear_autoscaling: _Optional[bool] = ...) -> None: ...

class Trial(_message.Message):
    __slots__ = ("version", "mode", "canary_percent")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    CANARY_PERCENT_FIELD_NUMBER: _ClassVar[int]
    version: int
    mode: TrialMode
    canary_percent: float
    def __init__(self, version: _Optional[int] = ..., mode: _Optional[_Union[TrialMode, str]] = ..., canary_percent: _Optional[float] = ...) -> None: ...

class UpdateDeploymentResponse(_message.Message):
    __slots__ = ("deployment",)
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    deployment: Deployment
    def __init__(self, deployment: _Optional[_Union[Deployment, _Mapping]] = ...) -> None: ...
