"""What a loaded model accepts and returns, as the runtime checks it on every request."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mlaas.datatypes import OIP_TO_NUMPY, oip_datatype


@dataclass(frozen=True)
class TensorInfo:
    name: str
    datatype: str  # OIP datatype; "" for non-tensor outputs, which the runtime does not serve
    shape: tuple[int, ...]  # -1 for variable dims
    onnx_type: str

    @property
    def dtype(self) -> np.dtype:
        return OIP_TO_NUMPY[self.datatype]


@dataclass(frozen=True)
class Signature:
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    # Derived lookups for the per-request path.
    inputs_by_name: dict[str, TensorInfo] = field(init=False, compare=False)
    tensor_outputs: list[TensorInfo] = field(init=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "inputs_by_name", {t.name: t for t in self.inputs})
        object.__setattr__(self, "tensor_outputs", [t for t in self.outputs if t.datatype])

    @property
    def batchable(self) -> bool:
        """Every input and output has a variable leading dimension, so requests can be stacked."""
        return all(t.shape and t.shape[0] == -1 for t in (*self.inputs, *self.outputs))

    def input(self, name: str) -> TensorInfo | None:
        return self.inputs_by_name.get(name)

    def output(self, name: str) -> TensorInfo | None:
        return next((t for t in self.outputs if t.name == name), None)


def _info(arg) -> TensorInfo:
    shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in (arg.shape or []))
    return TensorInfo(arg.name, oip_datatype(arg.type), shape, arg.type)


def from_session(session) -> Signature:
    return Signature(
        inputs=tuple(_info(a) for a in session.get_inputs()),
        outputs=tuple(_info(a) for a in session.get_outputs()),
    )
