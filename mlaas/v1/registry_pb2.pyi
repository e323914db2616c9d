from mlaas.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ArtifactKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ARTIFACT_KIND_UNSPECIFIED: _ClassVar[ArtifactKind]
    ARTIFACT_KIND_MODEL: _ClassVar[ArtifactKind]
    ARTIFACT_KIND_REFERENCE_DATA: _ClassVar[ArtifactKind]
ARTIFACT_KIND_UNSPECIFIED: ArtifactKind
ARTIFACT_KIND_MODEL: ArtifactKind
ARTIFACT_KIND_REFERENCE_DATA: ArtifactKind

class RegisterModelRequest(_message.Message):
    __slots__ = ("description", "artifact_chunk", "reference_data_chunk")
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_CHUNK_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_DATA_CHUNK_FIELD_NUMBER: _ClassVar[int]
    description: _types_pb2.ModelDescription
    artifact_chunk: bytes
    reference_data_chunk: bytes
    def __init__(self, description: _Optional[_Union[_types_pb2.ModelDescription, _Mapping]] = ..., artifact_chunk: _Optional[bytes] = ..., reference_data_chunk: _Optional[bytes] = ...) -> None: ...

class RegisterModelResponse(_message.Message):
    __slots__ = ("model", "created")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    model: _types_pb2.ModelVersion
    created: bool
    def __init__(self, model: _Optional[_Union[_types_pb2.ModelVersion, _Mapping]] = ..., created: _Optional[bool] = ...) -> None: ...

class InputRequirement(_message.Message):
    __slots__ = ("feature_count", "datatype")
    FEATURE_COUNT_FIELD_NUMBER: _ClassVar[int]
    DATATYPE_FIELD_NUMBER: _ClassVar[int]
    feature_count: int
    datatype: str
    def __init__(self, feature_count: _Optional[int] = ..., datatype: _Optional[str] = ...) -> None: ...

class MetricRequirement(_message.Message):
    __slots__ = ("name", "min_value", "dataset")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MIN_VALUE_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    name: str
    min_value: float
    dataset: str
    def __init__(self, name: _Optional[str] = ..., min_value: _Optional[float] = ..., dataset: _Optional[str] = ...) -> None: ...

class FindModelsRequest(_message.Message):
    __slots__ = ("task", "families", "framework", "input", "max_run_resources", "max_train_resources", "min_explainability", "metrics", "tags", "rank_by_metric", "latest_only", "page_size", "page_token", "name")
    TASK_FIELD_NUMBER: _ClassVar[int]
    FAMILIES_FIELD_NUMBER: _ClassVar[int]
    FRAMEWORK_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    MAX_RUN_RESOURCES_FIELD_NUMBER: _ClassVar[int]
    MAX_TRAIN_RESOURCES_FIELD_NUMBER: _ClassVar[int]
    MIN_EXPLAINABILITY_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    RANK_BY_METRIC_FIELD_NUMBER: _ClassVar[int]
    LATEST_ONLY_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    task: _types_pb2.Task
    families: _containers.RepeatedScalarFieldContainer[str]
    framework: str
    input: InputRequirement
    max_run_resources: _types_pb2.Resources
    max_train_resources: _types_pb2.Resources
    min_explainability: _types_pb2.ExplainabilityLevel
    metrics: _containers.RepeatedCompositeFieldContainer[MetricRequirement]
    tags: _containers.RepeatedScalarFieldContainer[str]
    rank_by_metric: str
    latest_only: bool
    page_size: int
    page_token: str
    name: str
    def __init__(self, task: _Optional[_Union[_types_pb2.Task, str]] = ..., families: _Optional[_Iterable[str]] = ..., framework: _Optional[str] = ..., input: _Optional[_Union[InputRequirement, _Mapping]] = ..., max_run_resources: _Optional[_Union[_types_pb2.Resources, _Mapping]] = ..., max_train_resources: _Optional[_Union[_types_pb2.Resources, _Mapping]] = ..., min_explainability: _Optional[_Union[_types_pb2.ExplainabilityLevel, str]] = ..., metrics: _Optional[_Iterable[_Union[MetricRequirement, _Mapping]]] = ..., tags: _Optional[_Iterable[str]] = ..., rank_by_metric: _Optional[str] = ..., latest_only: _Optional[bool] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class FindModelsResult(_message.Message):
    __slots__ = ("model", "rank", "rank_metric_value")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    RANK_METRIC_VALUE_FIELD_NUMBER: _ClassVar[int]
    model: _types_pb2.ModelVersion
    rank: int
    rank_metric_value: float
    def __init__(self, model: _Optional[_Union[_types_pb2.ModelVersion, _Mapping]] = ..., rank: _Optional[int] = ..., rank_metric_value: _Optional[float] = ...) -> None: ...

class FindModelsResponse(_message.Message):
    __slots__ = ("results", "next_page_token", "total_matches")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MATCHES_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[FindModelsResult]
    next_page_token: str
    total_matches: int
    def __init__(self, results: _Optional[_Iterable[_Union[FindModelsResult, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total_matches: _Optional[int] = ...) -> None: ...

class GetModelRequest(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: _types_pb2.ModelRef
    def __init__(self, ref: _Optional[_Union[_types_pb2.ModelRef, _Mapping]] = ...) -> None: ...

class GetModelResponse(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: _types_pb2.ModelVersion
    def __init__(self, model: _Optional[_Union[_types_pb2.ModelVersion, _Mapping]] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ("name", "page_size", "page_token")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    name: str
    page_size: int
    page_token: str
    def __init__(self, name: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models", "next_page_token")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[_types_pb2.ModelVersion]
    next_page_token: str
    def __init__(self, models: _Optional[_Iterable[_Union[_types_pb2.ModelVersion, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class SetAliasRequest(_message.Message):
    __slots__ = ("name", "alias", "version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    alias: str
    version: int
    def __init__(self, name: _Optional[str] = ..., alias: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class SetAliasResponse(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: _types_pb2.ModelVersion
    def __init__(self, model: _Optional[_Union[_types_pb2.ModelVersion, _Mapping]] = ...) -> None: ...

class DeleteModelVersionRequest(_message.Message):
    __slots__ = ("name", "version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class DeleteModelVersionResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DownloadArtifactRequest(_message.Message):
    __slots__ = ("ref", "kind")
    REF_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ref: _types_pb2.ModelRef
    kind: ArtifactKind
    def __init__(self, ref: _Optional[_Union[_types_pb2.ModelRef, _Mapping]] = ..., kind: _Optional[_Union[ArtifactKind, str]] = ...) -> None: ...

class DownloadArtifactResponse(_message.Message):
    __slots__ = ("model", "chunk")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    model: _types_pb2.ModelVersion
    chunk: bytes
    def __init__(self, model: _Optional[_Union[_types_pb2.ModelVersion, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...
