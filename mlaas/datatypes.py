"""Tensor datatypes: Open Inference Protocol names, ONNX type strings and numpy dtypes."""

from __future__ import annotations

import numpy as np

# ONNX tensor element type (as onnxruntime prints it) -> Open Inference Protocol datatype.
ONNX_TO_OIP = {
    "tensor(bool)": "BOOL",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}

OIP_TO_NUMPY = {
    "BOOL": np.dtype(np.bool_),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(np.object_),
}

NUMPY_TO_OIP = {dtype: name for name, dtype in OIP_TO_NUMPY.items()}


def oip_datatype(onnx_type: str) -> str:
    """The OIP datatype of an ONNX value type; "" for non-tensors (sequences, maps)."""
    return ONNX_TO_OIP.get(onnx_type, "")


def oip_of_numpy(dtype: np.dtype) -> str:
    dtype = np.dtype(dtype)
    if dtype.kind in "US":
        return "BYTES"
    try:
        return NUMPY_TO_OIP[dtype]
    except KeyError:
        raise ValueError(f"numpy dtype {dtype} has no Open Inference Protocol datatype") from None
