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
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Self, TypeVar

import grpc
import numpy as np

from mlaas.client import GrpcClient, SchedulerClient, label_batches, open_channel
from mlaas.errors import FailedPrecondition, InvalidArgument, MlaasError, from_rpc_error
from mlaas.message_limits import BULK_THRESHOLD_BYTES
from mlaas.oip import open_inference_v2_pb2 as oip
from mlaas.oip import open_inference_v2_pb2_grpc as oip_grpc
from mlaas.tensors import from_raw, to_raw
from mlaas.tls import ClientTLS
from mlaas.v1 import node_pb2, node_pb2_grpc, scheduler_pb2

T = TypeVar("T")


def build_request(
    model: str,
    inputs: Mapping[str, np.ndarray],
    request_id: str = "",
    outputs: Iterable[str] = (),
    version: str = "",
) -> oip.ModelInferRequest:
    """A ModelInferRequest carrying numpy `inputs` as raw tensor bytes."""
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
    """A ModelInferResponse's outputs as numpy arrays by name."""
    return {
        tensor.name: from_raw(raw, tensor.datatype, tuple(tensor.shape))
        for tensor, raw in zip(response.outputs, response.raw_output_contents, strict=True)
    }


@dataclass
class StreamResult:
    request_id: str
    outputs: dict[str, np.ndarray] | None
    error: str = ""
    model_version: str = ""


class InferenceClient(GrpcClient):
    """`connections` > 1 opens that many TCP connections to each endpoint and takes turns
    between them: a runtime's workers share its port and each connection lands on one worker
    (SO_REUSEPORT), so one connection would keep a single client on one of a replica's cores."""

    def __init__(
        self, address: str, token: str | None = None, timeout: float = 60.0, connections: int = 1,
        tls: ClientTLS | None = None,
    ):  # fmt: skip
        super().__init__(address, token, timeout, tls)
        self._extra = [open_channel(address, i, self.tls) for i in range(1, connections)]
        stubs = [oip_grpc.GRPCInferenceServiceStub(c) for c in (self._channel, *self._extra)]
        self._stubs = itertools.cycle(stubs)

    @property
    def _stub(self) -> oip_grpc.GRPCInferenceServiceStub:
        return next(self._stubs)

    def close(self) -> None:
        """Closes the runtime's channels."""
        super().close()
        for channel in self._extra:
            channel.close()

    def ready(self, model: str = "") -> bool:
        """Whether the runtime (or one of its models) is ready to serve."""
        if model:
            model_ready: oip.ModelReadyResponse = self._call(self._stub.ModelReady, oip.ModelReadyRequest(name=model))
            return model_ready.ready
        server_ready: oip.ServerReadyResponse = self._call(self._stub.ServerReady, oip.ServerReadyRequest())
        return server_ready.ready

    def metadata(self, model: str) -> oip.ModelMetadataResponse:
        """The model's Open Inference Protocol metadata: its inputs and outputs."""
        response: oip.ModelMetadataResponse = self._call(self._stub.ModelMetadata, oip.ModelMetadataRequest(name=model))
        return response

    def infer(
        self, model: str, inputs: Mapping[str, np.ndarray], outputs: Iterable[str] = (), request_id: str = ""
    ) -> dict[str, np.ndarray]:
        """One request: numpy inputs by name in, numpy outputs by name out."""
        return self.infer_request(build_request(model, inputs, request_id, outputs))

    def infer_request(self, request: oip.ModelInferRequest) -> dict[str, np.ndarray]:
        """A prebuilt ModelInferRequest; its numpy outputs by name."""
        return read_response(self._call(self._stub.ModelInfer, request))

    def report_node_labels(self, messages: list[node_pb2.ReportNodeLabelsRequest]) -> node_pb2.ReportNodeLabelsResponse:
        """Labels of a STRICT deployment to this runtime (DeploymentInference.report_labels)."""
        stub = node_pb2_grpc.NodeLabelsServiceStub(self._channel)
        response: node_pb2.ReportNodeLabelsResponse = self._call(stub.ReportNodeLabels, iter(messages))
        return response

    def infer_reference(
        self, model: str, input_name: str, datatype: str, uri: str, request_id: str = ""
    ) -> dict[str, np.ndarray]:
        """Inference on an input the runtime reads itself (file://, s3://, https://)."""
        tensor = oip.ModelInferRequest.InferInputTensor(name=input_name, datatype=datatype)
        tensor.parameters["data_uri"].string_param = uri
        request = oip.ModelInferRequest(model_name=model, inputs=[tensor], id=request_id)
        return read_response(self._call(self._stub.ModelInfer, request))

    def stream(self, model: str, batches: Iterable[Mapping[str, np.ndarray]]) -> Iterator[StreamResult]:
        """Streams every batch over one ModelStreamInfer call; results come as they finish,
        each with the id of its request ("0", "1", ...)."""
        counter = itertools.count()
        yield from self.stream_requests(build_request(model, inputs, str(next(counter))) for inputs in batches)

    def stream_requests(self, requests: Iterable[oip.ModelInferRequest]) -> Iterator[StreamResult]:
        """Streams prebuilt ModelInferRequests; yields each answer with its request id."""
        try:
            for response in self._stub.ModelStreamInfer(iter(requests), metadata=self._metadata):
                header = response.infer_response
                if response.error_message:
                    yield StreamResult(header.id, None, response.error_message, header.model_version)
                else:
                    yield StreamResult(header.id, read_response(header), model_version=header.model_version)
        except grpc.RpcError as err:
            raise from_rpc_error(err) from None


# A replica draining or restarting, or none ready for a moment: resolve again and retry. A
# server that shuts down cancels the calls it had not started (CANCELLED); this client never
# cancels its own calls, so that too means "try another replica".
RETRIED = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.FAILED_PRECONDITION})


class _Feeder:
    """The requests of one logical stream, across reconnections: every request taken from the
    source is pending until its answer arrives, and a new connection first resends those."""

    def __init__(
        self, model: str, batches: Iterable[Mapping[str, np.ndarray]], ids: Iterable[str] | None = None,
        max_bytes: int | None = None,
    ):  # fmt: skip
        self._model = model
        self._max_bytes = max_bytes
        self.refused: InvalidArgument | None = None  # the request that ended the stream
        self._source = iter(batches)
        self._ids = iter(ids) if ids is not None else map(str, itertools.count())
        self._lock = threading.Lock()
        self.pending: dict[str, oip.ModelInferRequest] = {}
        self.exhausted = False

    def requests(self) -> Iterator[oip.ModelInferRequest]:
        yield from list(self.pending.values())
        while True:
            with self._lock:  # an abandoned connection's sender may still be pulling
                inputs = next(self._source, None)
                if inputs is None:
                    self.exhausted = True
                    return
                request = build_request(self._model, inputs, next(self._ids))
                size = request.ByteSize()
                if self._max_bytes is not None and size > self._max_bytes:
                    self.refused = InvalidArgument(
                        f"request {request.id} is {size} bytes: a stream of requests over "
                        f"{self._max_bytes} bytes goes to the bulk workers (stream(..., bulk=True))"
                    )
                    self.exhausted = True
                    return
                self.pending[request.id] = request
            yield request


def is_bulk(request: oip.ModelInferRequest, threshold: int = BULK_THRESHOLD_BYTES) -> bool:
    """Whether a request goes to a runtime's bulk worker (with room for the model's name)."""
    size: int = request.ByteSize()
    return size + 1024 > threshold


def label_ids(request_id: str, rows: int) -> list[str]:
    """The ids a request's rows have in the Monitor, which labels must quote: the request's own
    id for a single row, `ID/0`, `ID/1`, ... for a batch."""
    return [request_id] if rows == 1 else [f"{request_id}/{i}" for i in range(rows)]


class DeploymentInference:
    """Inference on a deployment by id, as applications should call it: the endpoints come from
    the scheduler, calls are balanced over the ready replicas (over `connections` connections to
    each, so that all of a replica's workers serve one client), requests over
    BULK_THRESHOLD_BYTES go to the replicas' bulk workers (their other ports refuse them), and when a replica answers
    UNAVAILABLE (it drains in a rollout, or is being restarted) the endpoints are resolved again
    and the call retried, for up to `retry_seconds` without progress. A stream resends the
    requests that had no answer on a new connection, so no request fails or goes missing. The
    endpoints are also asked again every `refresh_seconds`, so that calls reach the replicas the
    scheduler adds (Scale, autoscaling); while the scheduler does not answer, calls go on to the
    endpoints known. An open stream stays on the replicas it started on. A call to a deployment
    that scaled to zero activates it and waits for its replica, within `retry_seconds`.

        with SchedulerClient(address) as scheduler:
            runtime = DeploymentInference(scheduler, deployment_id)
            labels = runtime.infer({"X": rows})["label"]
    """

    def __init__(
        self,
        scheduler: SchedulerClient,
        deployment_id: str,
        token: str | None = None,
        retry_seconds: float = 30.0,
        connections: int = 4,
        tls: ClientTLS | None = None,
        bulk_threshold_bytes: int = BULK_THRESHOLD_BYTES,
        refresh_seconds: float = 2.0,
    ):
        """`tls`: how to reach the runtimes; default: as the scheduler is reached (one mesh, one CA).
        `bulk_threshold_bytes`: the runtimes' MLAAS_INFERENCE_BULK_THRESHOLD_BYTES, if the mesh
        changed it."""
        self._refresh_seconds = refresh_seconds
        self._bulk_threshold = bulk_threshold_bytes
        self._scheduler = scheduler
        self._tls = tls or scheduler.tls
        self._deployment_id = deployment_id
        self._token = token
        self._retry_seconds = retry_seconds
        self._connections = connections  # per replica: see InferenceClient
        self._clients: dict[bool, InferenceClient] = {}  # by bulk or not
        self._resolved: dict[bool, tuple[str, float]] = {}  # by bulk or not: (address, when asked)
        # Clients of endpoints replaced by a refresh (by bulk or not): closed at the next one,
        # once the calls other threads may still make on them are over.
        self._retired: dict[bool, list[InferenceClient]] = {}
        self._resolving = threading.Lock()
        self.model = ""
        self.reconnects = 0

    def close(self) -> None:
        """Closes the channels to the deployment's replicas."""
        for client in [*self._clients.values(), *(c for retired in self._retired.values() for c in retired)]:
            client.close()
        self._clients.clear()
        self._retired.clear()
        self._resolved.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _runtime(self, bulk: bool = False) -> InferenceClient:
        with self._resolving:  # threads sharing this object refresh once, not each
            known, asked_at = self._resolved.get(bulk, ("", 0.0))
            client = self._clients.get(bulk)
            if client is not None and time.monotonic() < asked_at + self._refresh_seconds:
                return client
            try:
                address, self.model = self._scheduler.endpoints(self._deployment_id, bulk, self._retry_seconds)
            except MlaasError:
                if client is None:
                    raise
                self._resolved[bulk] = known, time.monotonic()  # the scheduler is away: keep what serves
                return client
            self._resolved[bulk] = address, time.monotonic()
            if client is not None and address == known:
                return client
            for retired in self._retired.pop(bulk, []):  # replaced a refresh ago: their calls are over
                retired.close()
            if client is not None:
                self._retired[bulk] = [client]
            connections = 1 if bulk else self._connections  # each replica has one bulk worker
            self._clients[bulk] = InferenceClient(address, self._token, connections=connections, tls=self._tls)
            return self._clients[bulk]

    def _reconnect_or_raise(self, err: MlaasError, deadline: float, pause: float) -> float:
        """After UNAVAILABLE: drop the connection and pause, unless the error is not one to retry
        or the retry budget is spent."""
        if err.code not in RETRIED or time.monotonic() > deadline:
            raise err
        self.close()
        self.reconnects += 1
        time.sleep(pause)
        return min(pause * 2, 0.5)

    def infer(
        self, inputs: Mapping[str, np.ndarray], outputs: Iterable[str] = (), request_id: str = ""
    ) -> dict[str, np.ndarray]:
        """One request. Give it a unique `request_id` to report labels for it later (rows of a
        batch are labelled as `ID/0`, `ID/1`, ...: see `label_ids`)."""
        request = build_request("", inputs, request_id, outputs)

        def send(runtime: InferenceClient) -> dict[str, np.ndarray]:
            request.model_name = self.model  # known once the endpoints are
            return runtime.infer_request(request)

        return self._retrying(send, is_bulk(request, self._bulk_threshold))

    def infer_reference(self, input_name: str, datatype: str, uri: str, request_id: str = "") -> dict[str, np.ndarray]:
        """Inference on an input the runtime reads itself (InferenceClient.infer_reference), on
        the bulk workers: a reference names a big input."""
        return self._retrying(
            lambda runtime: runtime.infer_reference(self.model, input_name, datatype, uri, request_id), bulk=True
        )

    def metadata(self) -> oip.ModelMetadataResponse:
        """The deployed model's inputs and outputs."""
        return self._retrying(lambda runtime: runtime.metadata(self.model))

    def report_labels(
        self, labels: Iterable[tuple[str, str | float]], batch: int = 1000
    ) -> node_pb2.ReportNodeLabelsResponse:
        """(request id, true label) pairs for a STRICT deployment, to one of its replicas on its
        node, where they stay: the Monitor sees only how many predictions were wrong. Returns
        once every label is on the node's disk; sent again to another replica (or the same one
        restarted) while none answers. An OPEN deployment's labels go to the Monitor
        (MonitorClient.report_labels): its replicas refuse them (FailedPrecondition)."""
        deployment = self._scheduler.get(self._deployment_id)
        if deployment.mode != scheduler_pb2.PLACEMENT_MODE_STRICT:
            raise FailedPrecondition(
                f"deployment {self._deployment_id} is not STRICT: report its labels to the Monitor "
                "(MonitorClient.report_labels)"
            )
        messages = [
            node_pb2.ReportNodeLabelsRequest(deployment_id=self._deployment_id, labels=chunk)
            for chunk in label_batches(labels, batch)
        ]
        return self._retrying(lambda runtime: runtime.report_node_labels(messages))

    def _retrying(self, call: Callable[[InferenceClient], T], bulk: bool = False) -> T:
        """`call` on a replica (a bulk worker with `bulk`), again on another after UNAVAILABLE."""
        deadline, pause = time.monotonic() + self._retry_seconds, 0.02
        while True:
            try:
                return call(self._runtime(bulk))
            except MlaasError as err:
                pause = self._reconnect_or_raise(err, deadline, pause)

    def stream(
        self, batches: Iterable[Mapping[str, np.ndarray]], ids: Iterable[str] | None = None, bulk: bool = False
    ) -> Iterator[StreamResult]:
        """Like InferenceClient.stream; each request is answered exactly once. `ids` are the
        request ids (default "0", "1", ...): give unique ones to report labels for them later.
        A stream of requests over BULK_THRESHOLD_BYTES goes to the bulk workers (`bulk`);
        otherwise such a request ends the stream with InvalidArgument once the requests before
        it are answered."""
        feeder: _Feeder | None = None
        deadline, pause = time.monotonic() + self._retry_seconds, 0.02
        while True:
            try:
                runtime = self._runtime(bulk)
                feeder = feeder or _Feeder(self.model, batches, ids, None if bulk else self._bulk_threshold)
                for result in runtime.stream_requests(feeder.requests()):
                    if feeder.pending.pop(result.request_id, None) is not None:
                        deadline = time.monotonic() + self._retry_seconds  # progress: a fresh budget
                        yield result
            except MlaasError as err:
                pause = self._reconnect_or_raise(err, deadline, pause)
                continue
            if feeder.exhausted and not feeder.pending:
                if feeder.refused is not None:
                    raise feeder.refused
                return
