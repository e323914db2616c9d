from mlaas.v1 import monitor_pb2 as _monitor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ReportNodeLabelsRequest(_message.Message):
    __slots__ = ("deployment_id", "labels")
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    deployment_id: str
    labels: _containers.RepeatedCompositeFieldContainer[_monitor_pb2.Label]
    def __init__(self, deployment_id: _Optional[str] = ..., labels: _Optional[_Iterable[_Union[_monitor_pb2.Label, _Mapping]]] = ...) -> None: ...

class ReportNodeLabelsResponse(_message.Message):
    __slots__ = ("accepted", "unmatched")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    UNMATCHED_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    unmatched: int
    def __init__(self, accepted: _Optional[int] = ..., unmatched: _Optional[int] = ...) -> None: ...
