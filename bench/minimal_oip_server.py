"""The smallest honest Open Inference Protocol server: one grpc.aio process, one onnxruntime
session per model (its default threads), no batching, no checks beyond what numpy and ONNX
Runtime do, no statistics, metrics, feedback or auth. What the runtime's features are measured
against: they should cost nothing beside it (bench/runtime_bench.py, kind `minimal`).

    python bench/minimal_oip_server.py --port 9002 --model-uri iris=/models/iris.onnx
"""

from __future__ import annotations

import argparse
import asyncio

import grpc
import numpy as np
import onnxruntime as ort

from mlaas.oip import open_inference_v2_pb2 as oip
from mlaas.oip import open_inference_v2_pb2_grpc as oip_grpc

OPTIONS = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)]
DTYPES = {"FP32": np.float32, "FP64": np.float64, "INT64": np.int64, "INT32": np.int32}
OIP = {np.dtype(v): k for k, v in DTYPES.items()}


class Minimal(oip_grpc.GRPCInferenceServiceServicer):
    def __init__(self, models: dict[str, str]):
        self._sessions = {name: ort.InferenceSession(path, providers=["CPUExecutionProvider"])
                          for name, path in models.items()}  # fmt: skip

    async def ServerReady(self, request, context):
        return oip.ServerReadyResponse(ready=True)

    async def ModelReady(self, request, context):
        return oip.ModelReadyResponse(ready=request.name in self._sessions)

    async def ModelInfer(self, request, context):
        session = self._sessions[request.model_name]
        feeds = {
            tensor.name: np.frombuffer(raw, DTYPES[tensor.datatype]).reshape(tensor.shape)
            for tensor, raw in zip(request.inputs, request.raw_input_contents, strict=True)
        }
        names = [o.name for o in session.get_outputs()]
        results = session.run(names, feeds)
        response = oip.ModelInferResponse(model_name=request.model_name, model_version="1", id=request.id)
        for name, array in zip(names, results, strict=True):
            response.outputs.add(name=name, datatype=OIP[array.dtype], shape=array.shape)
            response.raw_output_contents.append(array.tobytes())
        return response


async def serve(port: int, models: dict[str, str]) -> None:
    server = grpc.aio.server(options=OPTIONS)
    oip_grpc.add_GRPCInferenceServiceServicer_to_server(Minimal(models), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model-uri", action="append", default=[], help="NAME=PATH")
    args = parser.parse_args()
    asyncio.run(serve(args.port, dict(uri.split("=", 1) for uri in args.model_uri)))
