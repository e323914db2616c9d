import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Task(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_UNSPECIFIED: _ClassVar[Task]
    TASK_CLASSIFICATION: _ClassVar[Task]
    TASK_REGRESSION: _ClassVar[Task]
    TASK_CLUSTERING: _ClassVar[Task]
    TASK_ANOMALY_DETECTION: _ClassVar[Task]
    TASK_EMBEDDING: _ClassVar[Task]
    TASK_FORECASTING: _ClassVar[Task]

class ExplainabilityLevel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXPLAINABILITY_LEVEL_UNSPECIFIED: _ClassVar[ExplainabilityLevel]
    EXPLAINABILITY_LEVEL_NONE: _ClassVar[ExplainabilityLevel]
    EXPLAINABILITY_LEVEL_POST_HOC: _ClassVar[ExplainabilityLevel]
    EXPLAINABILITY_LEVEL_INTRINSIC: _ClassVar[ExplainabilityLevel]

class Visibility(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VISIBILITY_UNSPECIFIED: _ClassVar[Visibility]
    VISIBILITY_PUBLIC: _ClassVar[Visibility]
    VISIBILITY_PRIVATE: _ClassVar[Visibility]
TASK_UNSPECIFIED: Task
TASK_CLASSIFICATION: Task
TASK_REGRESSION: Task
TASK_CLUSTERING: Task
TASK_ANOMALY_DETECTION: Task
TASK_EMBEDDING: Task
TASK_FORECASTING: Task
EXPLAINABILITY_LEVEL_UNSPECIFIED: ExplainabilityLevel
EXPLAINABILITY_LEVEL_NONE: ExplainabilityLevel
EXPLAINABILITY_LEVEL_POST_HOC: ExplainabilityLevel
EXPLAINABILITY_LEVEL_INTRINSIC: ExplainabilityLevel
VISIBILITY_UNSPECIFIED: Visibility
VISIBILITY_PUBLIC: Visibility
VISIBILITY_PRIVATE: Visibility

class Resources(_message.Message):
    __slots__ = ("cpu_millicores", "memory_bytes", "gpus")
    CPU_MILLICORES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    cpu_millicores: int
    memory_bytes: int
    gpus: int
    def __init__(self, cpu_millicores: _Optional[int] = ..., memory_bytes: _Optional[int] = ..., gpus: _Optional[int] = ...) -> None: ...

class Explainability(_message.Message):
    __slots__ = ("level", "methods")
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    METHODS_FIELD_NUMBER: _ClassVar[int]
    level: ExplainabilityLevel
    methods: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, level: _Optional[_Union[ExplainabilityLevel, str]] = ..., methods: _Optional[_Iterable[str]] = ...) -> None: ...

class Metric(_message.Message):
    __slots__ = ("name", "value", "dataset")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: float
    dataset: str
    def __init__(self, name: _Optional[str] = ..., value: _Optional[float] = ..., dataset: _Optional[str] = ...) -> None: ...

class RecipeStep(_message.Message):
    __slots__ = ("estimator", "params")
    ESTIMATOR_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    estimator: str
    params: _struct_pb2.Struct
    def __init__(self, estimator: _Optional[str] = ..., params: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class TrainingRecipe(_message.Message):
    __slots__ = ("steps",)
    STEPS_FIELD_NUMBER: _ClassVar[int]
    steps: _containers.RepeatedCompositeFieldContainer[RecipeStep]
    def __init__(self, steps: _Optional[_Iterable[_Union[RecipeStep, _Mapping]]] = ...) -> None: ...

class TensorSpec(_message.Message):
    __slots__ = ("name", "datatype", "shape", "onnx_type")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DATATYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    ONNX_TYPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    datatype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    onnx_type: str
    def __init__(self, name: _Optional[str] = ..., datatype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., onnx_type: _Optional[str] = ...) -> None: ...

class Signature(_message.Message):
    __slots__ = ("inputs", "outputs")
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    inputs: _containers.RepeatedCompositeFieldContainer[TensorSpec]
    outputs: _containers.RepeatedCompositeFieldContainer[TensorSpec]
    def __init__(self, inputs: _Optional[_Iterable[_Union[TensorSpec, _Mapping]]] = ..., outputs: _Optional[_Iterable[_Union[TensorSpec, _Mapping]]] = ...) -> None: ...

class ModelDescription(_message.Message):
    __slots__ = ("name", "task", "family", "framework", "hyperparameters", "run_resources", "train_resources", "explainability", "metrics", "tags", "visibility", "recipe", "summary", "feature_names", "class_labels", "lineage")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    FRAMEWORK_FIELD_NUMBER: _ClassVar[int]
    HYPERPARAMETERS_FIELD_NUMBER: _ClassVar[int]
    RUN_RESOURCES_FIELD_NUMBER: _ClassVar[int]
    TRAIN_RESOURCES_FIELD_NUMBER: _ClassVar[int]
    EXPLAINABILITY_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    VISIBILITY_FIELD_NUMBER: _ClassVar[int]
    RECIPE_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    FEATURE_NAMES_FIELD_NUMBER: _ClassVar[int]
    CLASS_LABELS_FIELD_NUMBER: _ClassVar[int]
    LINEAGE_FIELD_NUMBER: _ClassVar[int]
    name: str
    task: Task
    family: str
    framework: str
    hyperparameters: _struct_pb2.Struct
    run_resources: Resources
    train_resources: Resources
    explainability: Explainability
    metrics: _containers.RepeatedCompositeFieldContainer[Metric]
    tags: _containers.RepeatedScalarFieldContainer[str]
    visibility: Visibility
    recipe: TrainingRecipe
    summary: str
    feature_names: _containers.RepeatedScalarFieldContainer[str]
    class_labels: _containers.RepeatedScalarFieldContainer[str]
    lineage: Lineage
    def __init__(self, name: _Optional[str] = ..., task: _Optional[_Union[Task, str]] = ..., family: _Optional[str] = ..., framework: _Optional[str] = ..., hyperparameters: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., run_resources: _Optional[_Union[Resources, _Mapping]] = ..., train_resources: _Optional[_Union[Resources, _Mapping]] = ..., explainability: _Optional[_Union[Explainability, _Mapping]] = ..., metrics: _Optional[_Iterable[_Union[Metric, _Mapping]]] = ..., tags: _Optional[_Iterable[str]] = ..., visibility: _Optional[_Union[Visibility, str]] = ..., recipe: _Optional[_Union[TrainingRecipe, _Mapping]] = ..., summary: _Optional[str] = ..., feature_names: _Optional[_Iterable[str]] = ..., class_labels: _Optional[_Iterable[str]] = ..., lineage: _Optional[_Union[Lineage, _Mapping]] = ...) -> None: ...

class StageTime(_message.Message):
    __slots__ = ("stage", "at")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    stage: str
    at: _timestamp_pb2.Timestamp
    def __init__(self, stage: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Lineage(_message.Message):
    __slots__ = ("parent_version", "trigger", "data_window_start", "data_window_end", "training_rows", "trained_on", "epsilon")
    PARENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_FIELD_NUMBER: _ClassVar[int]
    DATA_WINDOW_START_FIELD_NUMBER: _ClassVar[int]
    DATA_WINDOW_END_FIELD_NUMBER: _ClassVar[int]
    TRAINING_ROWS_FIELD_NUMBER: _ClassVar[int]
    TRAINED_ON_FIELD_NUMBER: _ClassVar[int]
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    parent_version: int
    trigger: str
    data_window_start: _timestamp_pb2.Timestamp
    data_window_end: _timestamp_pb2.Timestamp
    training_rows: int
    trained_on: str
    epsilon: float
    def __init__(self, parent_version: _Optional[int] = ..., trigger: _Optional[str] = ..., data_window_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., data_window_end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., training_rows: _Optional[int] = ..., trained_on: _Optional[str] = ..., epsilon: _Optional[float] = ...) -> None: ...

class ArtifactInfo(_message.Message):
    __slots__ = ("sha256", "size_bytes")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    size_bytes: int
    def __init__(self, sha256: _Optional[str] = ..., size_bytes: _Optional[int] = ...) -> None: ...

class ModelVersion(_message.Message):
    __slots__ = ("description", "version", "signature", "artifact", "reference_data", "reference_rows", "created_at", "aliases", "owner")
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_DATA_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_ROWS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    description: ModelDescription
    version: int
    signature: Signature
    artifact: ArtifactInfo
    reference_data: ArtifactInfo
    reference_rows: int
    created_at: _timestamp_pb2.Timestamp
    aliases: _containers.RepeatedScalarFieldContainer[str]
    owner: str
    def __init__(self, description: _Optional[_Union[ModelDescription, _Mapping]] = ..., version: _Optional[int] = ..., signature: _Optional[_Union[Signature, _Mapping]] = ..., artifact: _Optional[_Union[ArtifactInfo, _Mapping]] = ..., reference_data: _Optional[_Union[ArtifactInfo, _Mapping]] = ..., reference_rows: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., aliases: _Optional[_Iterable[str]] = ..., owner: _Optional[str] = ...) -> None: ...

class ModelRef(_message.Message):
    __slots__ = ("name", "version", "alias")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    alias: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ..., alias: _Optional[str] = ...) -> None: ...
