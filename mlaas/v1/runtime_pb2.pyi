from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class GetLoadRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetLoadResponse(_message.Message):
    __slots__ = ("in_flight", "answered", "busy_seconds", "latency_bounds_seconds", "latency_counts")
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    ANSWERED_FIELD_NUMBER: _ClassVar[int]
    BUSY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_BOUNDS_SECONDS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_COUNTS_FIELD_NUMBER: _ClassVar[int]
    in_flight: int
    answered: int
    busy_seconds: float
    latency_bounds_seconds: _containers.RepeatedScalarFieldContainer[float]
    latency_counts: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, in_flight: _Optional[int] = ..., answered: _Optional[int] = ..., busy_seconds: _Optional[float] = ..., latency_bounds_seconds: _Optional[_Iterable[float]] = ..., latency_counts: _Optional[_Iterable[int]] = ...) -> None: ...
