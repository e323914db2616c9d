"""inference.GRPCInferenceService on grpc.aio: the Open Inference Protocol v2 with Triton's
streaming, configuration, statistics and repository extensions. Inference itself is the data
plane's (dataplane.py); this is its gRPC adapter: answers go out as the bytes wire.py wrote.
"""

from __future__ import annotations

import asyncio
import collections
import functools
from collections.abc import AsyncIterator

from inference_svc.dataplane import DataPlane, Outcome
from inference_svc.repository import ModelRepository
from inference_svc.settings import RuntimeSettings
from inference_svc.signature import TensorInfo
from mlaas.errors import InvalidArgument, MlaasError, NotFound, PermissionDenied, Unavailable, from_rpc_error
from mlaas.oip import open_inference_v2_pb2 as oip
from mlaas.oip import open_inference_v2_pb2_grpc as oip_grpc
from mlaas.servicing import maps_errors

SERVER_NAME = "mlaas-inference"
EXTENSIONS = ["model_repository", "model_configuration", "statistics", "binary_tensor_data", "parameters", "data_uri"]
PLATFORM = "onnxruntime_onnx"
# Set on repository calls forwarded between the workers of one runtime, so they are not forwarded again.
LOCAL_ONLY = "mlaas_local_only"

_TRITON_TYPES = {
    "BOOL": oip.TYPE_BOOL, "UINT8": oip.TYPE_UINT8, "UINT16": oip.TYPE_UINT16, "UINT32": oip.TYPE_UINT32,
    "UINT64": oip.TYPE_UINT64, "INT8": oip.TYPE_INT8, "INT16": oip.TYPE_INT16, "INT32": oip.TYPE_INT32,
    "INT64": oip.TYPE_INT64, "FP16": oip.TYPE_FP16, "FP32": oip.TYPE_FP32, "FP64": oip.TYPE_FP64,
    "BYTES": oip.TYPE_STRING,
}  # fmt: skip


@maps_errors
class InferenceServicer(oip_grpc.GRPCInferenceServiceServicer):
    def __init__(
        self,
        settings: RuntimeSettings,
        repository: ModelRepository,
        plane: DataPlane,
        siblings: list[str] | None = None,
    ):
        self._settings = settings
        self._repo = repository
        self._plane = plane
        self._siblings = siblings or []
        self._stream_readers: set[asyncio.Task] = set()
        self.draining = False

    def drain(self) -> None:
        """Stops taking requests from open streams: each stream answers what it has read and then
        ends with UNAVAILABLE, so that its client reconnects (to another replica) and sends what
        was not answered again. Unary calls in flight finish as usual."""
        self.draining = True
        for reader in self._stream_readers:
            reader.cancel()

    # -- health and metadata ------------------------------------------------------------------

    async def ServerLive(self, request, context):
        return oip.ServerLiveResponse(live=True)

    async def ServerReady(self, request, context):
        # A model that failed to load is listed by RepositoryIndex; it does not make the
        # models that serve unready.
        ready = not self.draining and bool(self._repo.all())
        return oip.ServerReadyResponse(ready=ready)

    async def ModelReady(self, request, context):
        try:
            self._repo.get(request.name, request.version)
        except NotFound:
            return oip.ModelReadyResponse(ready=False)
        return oip.ModelReadyResponse(ready=not self.draining)

    async def ServerMetadata(self, request, context):
        from mlaas import __version__

        return oip.ServerMetadataResponse(name=SERVER_NAME, version=__version__, extensions=EXTENSIONS)

    async def ModelMetadata(self, request, context):
        loaded = self._repo.get(request.name, request.version)
        signature = loaded.model.signature

        def tensors(infos):
            return [
                oip.ModelMetadataResponse.TensorMetadata(name=t.name, datatype=t.datatype, shape=t.shape)
                for t in infos
                if t.datatype
            ]

        return oip.ModelMetadataResponse(
            name=loaded.name,
            versions=[loaded.version],
            platform=PLATFORM,
            inputs=tensors(signature.inputs),
            outputs=tensors(signature.outputs),
        )

    async def ModelConfig(self, request, context):
        loaded = self._repo.get(request.name, request.version)
        signature = loaded.model.signature
        batched = loaded.policy.batchable

        # Triton's convention: with max_batch_size > 0, dims leave out the batch dimension.
        def dims(info: TensorInfo) -> list[int]:
            return list(info.shape[1:] if batched else info.shape)

        config = oip.ModelConfig(
            name=loaded.name,
            platform=PLATFORM,
            backend="onnxruntime",
            runtime=SERVER_NAME,
            max_batch_size=loaded.policy.max_batch_size if batched else 0,
            input=[oip.ModelInput(name=t.name, data_type=_TRITON_TYPES[t.datatype], dims=dims(t))
                   for t in signature.inputs],
            output=[oip.ModelOutput(name=t.name, data_type=_TRITON_TYPES[t.datatype], dims=dims(t))
                    for t in signature.outputs if t.datatype],
            instance_group=[oip.ModelInstanceGroup(count=self._settings.workers, kind=oip.ModelInstanceGroup.KIND_CPU)],
            parameters={"sha256": oip.ModelParameter(string_value=loaded.sha256),
                        "source": oip.ModelParameter(string_value=loaded.source)},
        )  # fmt: skip
        if batched:
            config.dynamic_batching.max_queue_delay_microseconds = loaded.policy.max_queue_delay_us
        return oip.ModelConfigResponse(config=config)

    async def ModelStatistics(self, request, context):
        models = [self._repo.get(request.name, request.version)] if request.name else self._repo.all()
        return oip.ModelStatisticsResponse(model_stats=[m.stats.proto(m.name, m.version) for m in models])

    # -- repository -----------------------------------------------------------------------------

    async def RepositoryIndex(self, request, context):
        models = [
            oip.RepositoryIndexResponse.ModelIndex(name=m.name, version=m.version, state="READY")
            for m in self._repo.all()
        ]
        if not request.ready:
            models += [
                oip.RepositoryIndexResponse.ModelIndex(name=name, state="UNAVAILABLE", reason=reason)
                for name, reason in self._repo.unavailable().items()
            ]
        return oip.RepositoryIndexResponse(models=models)

    async def RepositoryModelLoad(self, request, context):
        if not request.model_name:
            raise InvalidArgument("model_name is required: a registry reference NAME[:VERSION|@ALIAS]")
        uri = request.parameters["uri"].string_param if "uri" in request.parameters else ""
        if uri and self._settings.managed:
            raise PermissionDenied("a deployment's runtime loads models from the registry only, not by uri")
        if uri:
            await self._repo.load_uri(request.model_name, uri, confined=True)
        else:
            await self._repo.load_ref(request.model_name)
        await self._forward("RepositoryModelLoad", request, context)
        return oip.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(self, request, context):
        await self._repo.unload(request.model_name)
        await self._forward("RepositoryModelUnload", request, context)
        return oip.RepositoryModelUnloadResponse()

    async def _forward(self, method: str, request, context) -> None:
        """Repeats a repository change on the other workers of this runtime, as the same caller
        (its token: each worker checks it again). A sibling that is still starting is waited
        for (wait_for_ready): the runtime answers health as soon as one worker listens, so a
        change can arrive before the others do."""
        if LOCAL_ONLY in request.parameters or not self._siblings:
            return
        import grpc

        forwarded = type(request)()
        forwarded.CopyFrom(request)
        forwarded.parameters[LOCAL_ONLY].bool_param = True
        caller = [(k, v) for k, v in context.invocation_metadata() or () if k == "authorization"]

        async def repeat_on(address: str) -> None:
            # The siblings' loopback control ports are plaintext by design (see server.py).
            async with grpc.aio.insecure_channel(address) as channel:
                stub = oip_grpc.GRPCInferenceServiceStub(channel)
                try:
                    await getattr(stub, method)(forwarded, metadata=caller, timeout=300, wait_for_ready=True)
                except grpc.aio.AioRpcError as error:
                    failure = from_rpc_error(error)
                    failure.message = f"{method} failed on the worker at {address}: {failure.message}"
                    raise failure from None

        await asyncio.gather(*(repeat_on(address) for address in self._siblings))

    # -- inference ------------------------------------------------------------------------------

    async def ModelInfer(self, request, context):
        return (await self._plane.infer(request, "unary")).unary()

    async def ModelStreamInfer(self, request_iterator, context) -> AsyncIterator[oip.ModelStreamInferResponse | bytes]:
        """Many requests in flight; each response carries its request's id; a failed request
        gets its own error_message and the stream goes on.

        A reader task takes requests as fast as they come and starts each one; this coroutine
        writes answers as they become ready. (Reading and writing from one coroutine, as an
        echo server does, measured 30% slower at 16 requests in flight: see bench/.)"""
        loop = asyncio.get_running_loop()
        ready: collections.deque[oip.ModelStreamInferResponse | bytes | None] = collections.deque()
        waiter: list[asyncio.Future | None] = [None]
        state = {"unanswered": 0, "reading": True}
        refused: list[MlaasError] = []  # why the requests stopped coming (the caller's access was revoked)

        def deliver(message: oip.ModelStreamInferResponse | bytes | None) -> None:
            ready.append(message)
            if waiter[0] is not None and not waiter[0].done():
                waiter[0].set_result(None)

        async def read() -> None:
            try:
                async for request in request_iterator:
                    state["unanswered"] += 1
                    self._plane.start(request, "stream", functools.partial(_answer_in_stream, request, deliver))
            except MlaasError as err:
                refused.append(err)
            finally:
                state["reading"] = False
                deliver(None)  # wakes the writer to check whether it is done

        reader = asyncio.ensure_future(read())
        self._stream_readers.add(reader)
        reader.add_done_callback(self._stream_readers.discard)
        if self.draining:
            reader.cancel()
        try:
            while state["reading"] or state["unanswered"]:
                if not ready:
                    waiter[0] = loop.create_future()
                    await waiter[0]
                    waiter[0] = None
                    continue
                message = ready.popleft()
                if message is None:
                    if reader.done() and not reader.cancelled() and reader.exception() is not None:
                        raise reader.exception()
                    continue
                state["unanswered"] -= 1
                yield message
            if refused:
                raise refused[0]
            if self.draining:
                raise Unavailable("the runtime is draining; reconnect and resend what was not answered")
        finally:
            reader.cancel()


def _answer_in_stream(request, deliver, outcome: Outcome) -> None:
    """A streamed request's answer as its stream message: the serialized answer, or the error
    (with the request's id, so the client knows which one failed)."""
    if isinstance(outcome, MlaasError):
        header = oip.ModelInferResponse(
            model_name=request.model_name, model_version=request.model_version, id=request.id
        )
        deliver(oip.ModelStreamInferResponse(error_message=outcome.message, infer_response=header))
    else:
        deliver(outcome.streamed())
