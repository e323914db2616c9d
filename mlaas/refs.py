"""Model references as people type them: NAME, NAME:VERSION or NAME@ALIAS."""

from __future__ import annotations

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


def enum_value(enum, prefix: str, text: str | int) -> int:
    """TASK_CLASSIFICATION from "classification", "CLASSIFICATION" or the full name."""
    if isinstance(text, int):
        return text
    key = text.strip().upper().replace("-", "_")
    if not key.startswith(prefix):
        key = prefix + key
    try:
        return enum.Value(key)
    except ValueError:
        choices = [n[len(prefix) :].lower() for n in enum.DESCRIPTOR.values_by_name if not n.endswith("UNSPECIFIED")]
        raise InvalidArgument(f"{text!r} is not one of: {', '.join(choices)}") from None


def enum_label(enum, prefix: str, value: int) -> str:
    return enum.Name(value)[len(prefix) :].lower()


def state_name(value: int) -> str:
    """A deployment state as people read it: READY, CACHED, ..."""
    return scheduler_pb2.DeploymentState.Name(value).removeprefix("DEPLOYMENT_STATE_")
