"""The ceiling of the Python gRPC transport here: a grpc.aio server speaking the same
GRPCInferenceService that parses each request and returns a prebuilt response of the size the
real model would return, doing no decoding and no inference.

    python bench/echo_server.py --port 9001 --output-columns 3
"""

from __future__ import annotations

import argparse
import asyncio

import grpc

from mlaas.oip import open_inference_v2_pb2 as oip
from mlaas.oip import open_inference_v2_pb2_grpc as oip_grpc

OPTIONS = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)]


def response_for(rows: int, columns: int) -> oip.ModelInferResponse:
    # label (INT64, rows) and probabilities (FP32, rows x columns), as a scikit-learn classifier answers
    return oip.ModelInferResponse(
        model_name="echo",
        model_version="1",
        outputs=[
            oip.ModelInferResponse.InferOutputTensor(name="label", datatype="INT64", shape=[rows]),
            oip.ModelInferResponse.InferOutputTensor(name="probabilities", datatype="FP32", shape=[rows, columns]),
        ],
        raw_output_contents=[bytes(8 * rows), bytes(4 * rows * columns)],
    )


class Echo(oip_grpc.GRPCInferenceServiceServicer):
    def __init__(self, columns: int):
        self._columns = columns
        self._cache: dict[int, oip.ModelInferResponse] = {}

    def _answer(self, request) -> oip.ModelInferResponse:
        rows = request.inputs[0].shape[0]
        response = self._cache.get(rows)
        if response is None:
            response = self._cache[rows] = response_for(rows, self._columns)
        answer = oip.ModelInferResponse()
        answer.CopyFrom(response)
        answer.id = request.id
        return answer

    async def ModelInfer(self, request, context):
        return self._answer(request)

    async def ModelStreamInfer(self, request_iterator, context):
        async for request in request_iterator:
            yield oip.ModelStreamInferResponse(infer_response=self._answer(request))


async def serve(port: int, columns: int) -> None:
    server = grpc.aio.server(options=OPTIONS)
    oip_grpc.add_GRPCInferenceServiceServicer_to_server(Echo(columns), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--output-columns", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.output_columns))
