"""numpy arrays <-> Open Inference Protocol raw tensor bytes, for clients and the runtime.

BYTES tensors travel as each element's 4-byte little-endian length followed by its bytes;
every other datatype as row-major little-endian values.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import numpy as np

from mlaas.datatypes import OIP_TO_NUMPY, oip_of_numpy

_LENGTH = struct.Struct("<I")


def decode_bytes(raw: bytes | memoryview, at_most: int | None = None) -> np.ndarray:
    """The elements of a raw BYTES tensor; with `at_most`, ValueError as soon as there are more
    (so that a few bytes of empty elements never become millions of objects first)."""
    items: list[bytes] = []
    offset, end = 0, len(raw)
    while offset < end:
        if at_most is not None and len(items) == at_most:
            raise ValueError(f"more than the {at_most} elements its shape declares")
        if offset + 4 > end:
            raise ValueError("truncated length prefix")
        (length,) = _LENGTH.unpack_from(raw, offset)
        offset += 4
        if offset + length > end:
            raise ValueError("element runs past the end of the data")
        items.append(bytes(raw[offset : offset + length]))  # a memoryview's slice is no bytes
        offset += length
    return np.array(items, dtype=np.object_)


def encode_bytes(array: np.ndarray) -> bytes:
    parts = []
    for item in array.reshape(-1):
        data = item if isinstance(item, bytes) else str(item).encode()
        parts.append(_LENGTH.pack(len(data)))
        parts.append(data)
    return b"".join(parts)


def to_raw(array: np.ndarray) -> tuple[str, bytes]:
    """(OIP datatype, raw bytes) of an array."""
    datatype = oip_of_numpy(array.dtype)
    if datatype == "BYTES":
        return datatype, encode_bytes(array)
    return datatype, np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"), copy=False).tobytes()


def from_raw(raw: bytes, datatype: str, shape: Sequence[int]) -> np.ndarray:
    if datatype == "BYTES":
        return decode_bytes(raw).reshape(shape)
    return np.frombuffer(raw, dtype=OIP_TO_NUMPY[datatype]).reshape(shape)
