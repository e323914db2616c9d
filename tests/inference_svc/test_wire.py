"""Answers serialized by hand (wire.py) must be what protobuf itself makes of the same response:
every client parses them with its generated code."""

from __future__ import annotations

import numpy as np
import pytest

from inference_svc.wire import Answer, stream_message
from mlaas.oip import open_inference_v2_pb2 as oip
from mlaas.tensors import encode_bytes

OUTPUTS = [
    ("probabilities", np.random.default_rng(0).random((1000, 3), dtype=np.float32), "FP32"),
    ("label", np.arange(1000, dtype=np.int64), "INT64"),
    ("flags", np.array([[True, False], [False, True]]), "BOOL"),
    ("half", np.ones((2, 2), dtype=np.float16)[:, :1], "FP16"),  # not contiguous
    ("scalar", np.array(7, dtype=np.int32), "INT32"),
    ("names", np.array(["setosa", "", "é" * 200], dtype=object), "BYTES"),
    ("empty", np.zeros((0, 3), dtype=np.float32), "FP32"),
]


def _by_protobuf() -> oip.ModelInferResponse:
    response = oip.ModelInferResponse(model_name="iris", model_version="3", id="req-1")
    for name, array, datatype in OUTPUTS:
        response.outputs.add(name=name, datatype=datatype, shape=array.shape)
        raw = encode_bytes(array) if datatype == "BYTES" else np.ascontiguousarray(array).tobytes()
        response.raw_output_contents.append(raw)
    return response


@pytest.fixture
def answer() -> Answer:
    built = Answer()
    built.head.model_name, built.head.model_version, built.head.id = "iris", "3", "req-1"
    for name, array, datatype in OUTPUTS:
        built.add_output(name, array, datatype)
    return built


def test_a_unary_answer_parses_to_the_response_protobuf_would_send(answer):
    assert oip.ModelInferResponse.FromString(answer.unary()) == _by_protobuf()


def test_a_streamed_answer_parses_to_the_stream_message_protobuf_would_send(answer):
    expected = oip.ModelStreamInferResponse(infer_response=_by_protobuf())
    assert oip.ModelStreamInferResponse.FromString(answer.streamed()) == expected
    assert oip.ModelStreamInferResponse.FromString(stream_message(answer.unary())) == expected


def test_lengths_past_one_varint_byte_are_encoded_whole():
    big = np.zeros(3_000_000, dtype=np.uint8)  # a length of 3 varint bytes
    built = Answer()
    built.add_output("x", big, "UINT8")
    parsed = oip.ModelInferResponse.FromString(built.unary())
    assert len(parsed.raw_output_contents[0]) == big.size and parsed.outputs[0].shape == [big.size]
