"""Open Inference Protocol tensors <-> numpy.

Raw contents become zero-copy numpy views (np.frombuffer over the request's bytes); typed
`contents` fields are converted once. Every input is checked against the model signature, and
an error names the tensor and what was expected.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from inference_svc.signature import Signature, TensorInfo
from mlaas.datatypes import OIP_TO_NUMPY
from mlaas.errors import InvalidArgument, ResourceExhausted
from mlaas.tensors import decode_bytes

# OIP datatype -> the typed contents field that carries it (FP16 travels only as raw bytes).
CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


def _shape_error(tensor: str, expected: Sequence[int], got: Sequence[int]) -> InvalidArgument:
    want = "[" + ", ".join("-1" if d < 0 else str(d) for d in expected) + "]"
    return InvalidArgument(f"input {tensor!r}: shape {list(got)} does not match the model's {want} (-1 = any)")


def check_shape(info: TensorInfo, shape: Sequence[int]) -> None:
    if len(shape) != len(info.shape):
        raise _shape_error(info.name, info.shape, shape)
    for want, got in zip(info.shape, shape, strict=False):  # lengths checked above
        if got < 0 or (want >= 0 and want != got):
            raise _shape_error(info.name, info.shape, shape)


def _from_contents(tensor, dtype: np.dtype, datatype: str) -> np.ndarray:
    field = CONTENTS_FIELD.get(datatype)
    if field is None:
        raise InvalidArgument(f"input {tensor.name!r}: {datatype} data must be sent in raw_input_contents")
    values = getattr(tensor.contents, field)
    if datatype == "BYTES":
        return np.array(list(values), dtype=np.object_)
    return np.array(values, dtype=dtype)


def decode_array(tensor, raw: bytes | memoryview | None, info: TensorInfo, max_bytes_elements: int) -> np.ndarray:
    """One request tensor as a numpy array shaped as the request says, checked against `info`.
    A BYTES tensor's elements become Python objects (~50 bytes each, however short): their count
    is bounded by `max_bytes_elements` before any is made."""
    if tensor.datatype != info.datatype:
        raise InvalidArgument(
            f"input {tensor.name!r}: datatype {tensor.datatype or '(none)'}, expected {info.datatype}"
        )
    shape = tuple(tensor.shape)
    check_shape(info, shape)
    count = math.prod(shape)
    dtype = OIP_TO_NUMPY[info.datatype]
    if info.datatype == "BYTES" and count > max_bytes_elements:
        raise ResourceExhausted(
            f"input {tensor.name!r}: {count} BYTES elements; at most {max_bytes_elements} a request "
            "(MLAAS_MAX_BYTES_ELEMENTS)"
        )
    try:
        if raw is not None:
            array = decode_bytes(raw, count) if info.datatype == "BYTES" else np.frombuffer(raw, dtype=dtype)
        else:
            array = _from_contents(tensor, dtype, info.datatype)
    except ValueError as err:
        raise InvalidArgument(f"input {tensor.name!r}: malformed {info.datatype} data: {err}") from None
    if array.size != count:
        raise InvalidArgument(f"input {tensor.name!r}: shape {list(shape)} needs {count} elements, got {array.size}")
    if info.datatype == "BYTES":
        # onnxruntime takes string tensors as str objects
        array = np.array([v.decode("utf-8", "replace") for v in array], dtype=np.object_)
    return array.reshape(shape)


def requested_outputs(request, signature: Signature) -> list[TensorInfo]:
    """The outputs to return: the requested ones in order, or every tensor output."""
    if not request.outputs:
        return signature.tensor_outputs
    chosen = []
    for wanted in request.outputs:
        info = signature.output(wanted.name)
        if info is None:
            names = ", ".join(o.name for o in signature.outputs)
            raise InvalidArgument(f"requested output {wanted.name!r} does not exist; the model has: {names}")
        if not info.datatype:
            raise InvalidArgument(f"output {wanted.name!r} is a {info.onnx_type}, not a tensor")
        chosen.append(info)
    return chosen
