"""Inference answers written to the wire by hand, where protobuf is slow.

An answer is its header (a ModelInferResponse without raw_output_contents, serialized by
protobuf) followed by each output's bytes as a length-delimited field 6, joined once; a stream
message wraps that as its field 2. Protobuf's own path (append the bytes, SerializeToString)
copies every output twice and measured 25 ms on the event loop for a 30 MB answer against 1.6 ms
this way, and while the loop is busy every other caller of the worker waits
(bench/interference_bench.py). The gRPC handlers (`add_inference_service`) send bytes as they
are and serialize any other answer as usual.
"""

from __future__ import annotations

import grpc
import numpy as np
from google.protobuf import message_factory

from mlaas.oip import open_inference_v2_pb2 as oip
from mlaas.tensors import encode_bytes

RAW_OUTPUT_CONTENTS = 6  # ModelInferResponse.raw_output_contents
INFER_RESPONSE = 2  # ModelStreamInferResponse.infer_response
SERVICE = oip.DESCRIPTOR.services_by_name["GRPCInferenceService"]


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _length_delimited(number: int, length: int) -> bytes:
    return _varint(number << 3 | 2) + _varint(length)


def raw_output(array: np.ndarray, datatype: str) -> bytes | memoryview:
    """An output tensor's bytes as the protocol lays them out, without a copy where it can."""
    if datatype == "BYTES":
        return encode_bytes(array)
    return np.ascontiguousarray(array).reshape(-1).view(np.uint8).data


class Answer:
    """One request's answer: `head` carries everything but the outputs' values, `arrays` them
    (each protocol lays them out its own way: gRPC as raw bytes here, REST in rest_codec.py)."""

    __slots__ = ("arrays", "datatypes", "head")

    def __init__(self) -> None:
        self.head = oip.ModelInferResponse()
        self.arrays: list[np.ndarray] = []
        self.datatypes: list[str] = []  # beside the head's, which protobuf reads back slowly

    def add_output(self, name: str, array: np.ndarray, datatype: str) -> None:
        self.head.outputs.add(name=name, datatype=datatype, shape=array.shape)
        self.arrays.append(array)
        self.datatypes.append(datatype)

    def _parts(self) -> list[bytes | memoryview]:
        parts: list[bytes | memoryview] = [self.head.SerializeToString()]
        for array, datatype in zip(self.arrays, self.datatypes, strict=True):
            raw = raw_output(array, datatype)
            parts += [_length_delimited(RAW_OUTPUT_CONTENTS, len(raw)), raw]
        return parts

    def unary(self) -> bytes:
        """The serialized ModelInferResponse."""
        return b"".join(self._parts())

    def streamed(self) -> bytes:
        """The serialized ModelStreamInferResponse carrying it."""
        parts = self._parts()
        return b"".join([_length_delimited(INFER_RESPONSE, sum(len(p) for p in parts)), *parts])


def stream_message(infer_response: bytes) -> bytes:
    """A serialized ModelInferResponse as a serialized ModelStreamInferResponse."""
    return _length_delimited(INFER_RESPONSE, len(infer_response)) + infer_response


def _serialize(answer) -> bytes:
    return answer if isinstance(answer, bytes) else answer.SerializeToString()


def add_inference_service(servicer, server: grpc.aio.Server) -> None:
    """Registers the servicer as the generated add_GRPCInferenceServiceServicer_to_server does,
    except that answers already serialized (bytes) go out as they are."""
    kinds = {(False, False): grpc.unary_unary_rpc_method_handler, (True, True): grpc.stream_stream_rpc_method_handler}
    handlers = {
        method.name: kinds[method.client_streaming, method.server_streaming](
            getattr(servicer, method.name),
            request_deserializer=message_factory.GetMessageClass(method.input_type).FromString,
            response_serializer=_serialize,
        )
        for method in SERVICE.methods
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE.full_name, handlers),))
    server.add_registered_method_handlers(SERVICE.full_name, handlers)
