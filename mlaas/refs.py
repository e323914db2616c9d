"""Model references as people type them: NAME, NAME:VERSION or NAME@ALIAS."""

from __future__ import annotations

from typing import TypeVar, cast

from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper

from mlaas.errors import InvalidArgument
from mlaas.v1 import scheduler_pb2, types_pb2


def parse_ref(text: str) -> types_pb2.ModelRef:
    if "@" in text:
        name, alias = text.split("@", 1)
        if not name or not alias:
            raise InvalidArgument(f"model reference {text!r}: expected NAME@ALIAS")
        return types_pb2.ModelRef(name=name, alias=alias)
    if ":" in text:
        name, version = text.rsplit(":", 1)
        if not name or not version.isdigit() or int(version) < 1:
            raise InvalidArgument(f"model reference {text!r}: expected NAME:VERSION with VERSION >= 1")
        return types_pb2.ModelRef(name=name, version=int(version))
    if not text:
        raise InvalidArgument("empty model reference")
    return types_pb2.ModelRef(name=text)


def format_ref(ref: types_pb2.ModelRef) -> str:
    which = ref.WhichOneof("selector")
    if which == "version":
        return f"{ref.name}:{ref.version}"
    if which == "alias":
        return f"{ref.name}@{ref.alias}"
    return ref.name


# A generated enum as the stubs have it: a class deriving from int.
EnumT = TypeVar("EnumT", bound=int)


def _wrapper(enum: type[int]) -> EnumTypeWrapper:
    # At run time a generated enum is protobuf's EnumTypeWrapper; the stubs' class exists only in them.
    return cast(EnumTypeWrapper, enum)


def enum_value(enum: type[EnumT], prefix: str, text: str | int) -> EnumT:
    """TASK_CLASSIFICATION from "classification", "CLASSIFICATION" or the full name."""
    if isinstance(text, int):
        number = text
    else:
        key = text.strip().upper().replace("-", "_")
        if not key.startswith(prefix):
            key = prefix + key
        try:
            number = _wrapper(enum).Value(key)
        except ValueError:
            names = _wrapper(enum).DESCRIPTOR.values_by_name
            choices = [n[len(prefix) :].lower() for n in names if not n.endswith("UNSPECIFIED")]
            raise InvalidArgument(f"{text!r} is not one of: {', '.join(choices)}") from None
    # An enum field holds a plain int at run time, which the stubs type as the enum's class.
    return cast(EnumT, number)


def enum_name(enum: type[int], value: int) -> str:
    """TASK_CLASSIFICATION from its number."""
    name: str = _wrapper(enum).Name(value)
    return name


def enum_label(enum: type[int], prefix: str, value: int) -> str:
    return enum_name(enum, value)[len(prefix) :].lower()


def state_name(value: int) -> str:
    """A deployment state as people read it: READY, CACHED, ..."""
    return enum_name(scheduler_pb2.DeploymentState, value).removeprefix("DEPLOYMENT_STATE_")


def job_state_name(value: int) -> str:
    """A training job's state as people read it: RUNNING, SUCCEEDED, ..."""
    return enum_name(scheduler_pb2.JobState, value).removeprefix("JOB_STATE_")
