"""Client for the inference runtime (Open Inference Protocol v2 over gRPC).

    from mlaas.inference_client import InferenceClient
    with InferenceClient("127.0.0.1:8001") as runtime:
        outputs = runtime.infer("iris-logreg", {"X": rows})          # dict of numpy arrays
        for result in runtime.stream("iris-logreg", ({"X": r} for r in batches)):
            ...

This module loads the `inference.*` protobuf stubs; keep it out of processes that also import
tritonclient, KServe or MLServer, which define the same symbols.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

import grpc
import numpy as np

from mlaas.client import GrpcClient
from mlaas.errors import from_rpc_error
from mlaas.oip import open_inference_v2_pb2 as oip
from mlaas.oip import open_inference_v2_pb2_grpc as oip_grpc
from mlaas.tensors import from_raw, to_raw


def build_request(
    model: str,
    inputs: Mapping[str, np.ndarray],
    request_id: str = "",
    outputs: Iterable[str] = (),
    version: str = "",
) -> oip.ModelInferRequest:
    tensors, raws = [], []
    for name, array in inputs.items():
        array = np.asarray(array)
        datatype, raw = to_raw(array)
        tensors.append(oip.ModelInferRequest.InferInputTensor(name=name, datatype=datatype, shape=array.shape))
        raws.append(raw)
    return oip.ModelInferRequest(
        model_name=model,
        model_version=version,
        id=request_id,
        inputs=tensors,
        raw_input_contents=raws,
        outputs=[oip.ModelInferRequest.InferRequestedOutputTensor(name=n) for n in outputs],
    )


def read_response(response: oip.ModelInferResponse) -> dict[str, np.ndarray]:
    return {
        tensor.name: from_raw(raw, tensor.datatype, tuple(tensor.shape))
        for tensor, raw in zip(response.outputs, response.raw_output_contents, strict=True)
    }


@dataclass
class StreamResult:
    request_id: str
    outputs: dict[str, np.ndarray] | None
    error: str = ""


class InferenceClient(GrpcClient):
    def __init__(self, address: str, token: str | None = None, timeout: float = 60.0):
        super().__init__(address, token, timeout)
        self._stub = oip_grpc.GRPCInferenceServiceStub(self._channel)

    def ready(self, model: str = "") -> bool:
        if model:
            return self._call(self._stub.ModelReady, oip.ModelReadyRequest(name=model)).ready
        return self._call(self._stub.ServerReady, oip.ServerReadyRequest()).ready

    def metadata(self, model: str) -> oip.ModelMetadataResponse:
        return self._call(self._stub.ModelMetadata, oip.ModelMetadataRequest(name=model))

    def infer(
        self, model: str, inputs: Mapping[str, np.ndarray], outputs: Iterable[str] = (), request_id: str = ""
    ) -> dict[str, np.ndarray]:
        request = build_request(model, inputs, request_id, outputs)
        return read_response(self._call(self._stub.ModelInfer, request))

    def infer_reference(self, model: str, input_name: str, datatype: str, uri: str) -> dict[str, np.ndarray]:
        """Inference on an input the runtime reads itself (file://, s3://, https://)."""
        tensor = oip.ModelInferRequest.InferInputTensor(name=input_name, datatype=datatype)
        tensor.parameters["data_uri"].string_param = uri
        request = oip.ModelInferRequest(model_name=model, inputs=[tensor])
        return read_response(self._call(self._stub.ModelInfer, request))

    def stream(self, model: str, batches: Iterable[Mapping[str, np.ndarray]]) -> Iterator[StreamResult]:
        """Streams every batch over one ModelStreamInfer call; results come as they finish,
        each with the id of its request ("0", "1", ...)."""
        counter = itertools.count()
        requests = (build_request(model, inputs, str(next(counter))) for inputs in batches)
        try:
            for response in self._stub.ModelStreamInfer(requests, metadata=self._metadata):
                header = response.infer_response
                if response.error_message:
                    yield StreamResult(header.id, None, response.error_message)
                else:
                    yield StreamResult(header.id, read_response(header))
        except grpc.RpcError as err:
            raise from_rpc_error(err) from None
