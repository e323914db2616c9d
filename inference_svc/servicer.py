"""inference.GRPCInferenceService on grpc.aio: the Open Inference Protocol v2 with Triton's
streaming, configuration, statistics and repository extensions.

The hot path (ModelInfer, ModelStreamInfer) decodes on the event loop with zero-copy views,
hands the rows to the model's dynamic batcher, and encodes the answer when the batch returns
(to bytes, by hand: wire.py). Streamed requests get no task of their own: a completion callback
queues each response.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import AsyncIterator

import numpy as np

from inference_svc import data_refs
from inference_svc.access import CALLER_TENANT, feedback_id
from inference_svc.codec import check_shape, decode_array, requested_outputs
from inference_svc.feedback import FeedbackTap
from inference_svc.limits import TenantLimits
from inference_svc.metrics import RuntimeMetrics
from inference_svc.repository import LoadedModel, ModelRepository
from inference_svc.settings import RuntimeSettings
from inference_svc.signature import TensorInfo
from inference_svc.wire import Answer, stream_message
from mlaas.errors import InvalidArgument, MlaasError, NotFound, PermissionDenied, Unavailable, from_rpc_error
from mlaas.oip import open_inference_v2_pb2 as oip
from mlaas.oip import open_inference_v2_pb2_grpc as oip_grpc
from mlaas.servicing import maps_errors

log = logging.getLogger(__name__)

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


class Prepared:
    """A decoded request, ready for its batcher."""

    __slots__ = ("feedback_id", "feeds", "loaded", "outputs", "references", "request", "rows", "tenant")

    def __init__(self, request, loaded: LoadedModel, feeds, outputs: list[TensorInfo], references: bool):
        self.request = request
        self.feedback_id = feedback_id(request.id)  # read here, in the caller's own task
        self.tenant = CALLER_TENANT.get()
        self.loaded = loaded
        self.feeds = feeds  # an input given by data_uri is None until _resolve_refs loads it
        self.rows = 0
        self.outputs = outputs
        self.references = references


@maps_errors
class InferenceServicer(oip_grpc.GRPCInferenceServiceServicer):
    def __init__(
        self,
        settings: RuntimeSettings,
        repository: ModelRepository,
        feedback: FeedbackTap,
        metrics: RuntimeMetrics,
        siblings: list[str] | None = None,
    ):
        self._settings = settings
        self._max_bytes_elements = settings.max_bytes_elements
        self._repo = repository
        self._feedback = feedback
        self._metrics = metrics
        self._siblings = siblings or []
        self._limits = TenantLimits(settings.tenant_share)
        self._observers: dict[tuple[str, str, str], object] = {}
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

    def _prepare(self, request) -> Prepared:
        """Decodes and checks a request; raises InvalidArgument/NotFound with the reason."""
        loaded = self._repo.get(request.model_name, request.model_version)
        signature = loaded.model.signature
        raw = request.raw_input_contents
        if raw and len(raw) != len(request.inputs):
            raise InvalidArgument(
                f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} inputs; "
                "send all inputs raw or none"
            )
        feeds: dict[str, np.ndarray] = {}
        references = False
        for index, tensor in enumerate(request.inputs):
            info = signature.input(tensor.name)
            if info is None:
                names = ", ".join(t.name for t in signature.inputs)
                raise InvalidArgument(f"input {tensor.name!r} does not exist; the model takes: {names}")
            if tensor.name in feeds:
                raise InvalidArgument(f"input {tensor.name!r} appears twice")
            if "data_uri" in tensor.parameters:
                feeds[tensor.name] = None  # resolved off the loop by _resolve_refs
                references = True
                continue
            feeds[tensor.name] = decode_array(tensor, raw[index] if raw else None, info, self._max_bytes_elements)
        if len(feeds) != len(signature.inputs):
            missing = [t.name for t in signature.inputs if t.name not in feeds]
            raise InvalidArgument(f"missing input(s) {missing}")
        outputs = requested_outputs(request, signature)
        return Prepared(request, loaded, feeds, outputs, references)

    async def _resolve_refs(self, prepared: Prepared) -> None:
        signature = prepared.loaded.model.signature
        for tensor in prepared.request.inputs:
            if prepared.feeds[tensor.name] is not None:
                continue
            uri = tensor.parameters["data_uri"].string_param
            array = await asyncio.to_thread(data_refs.load, uri, self._settings.data_refs)
            info = signature.input(tensor.name)
            if tensor.datatype and tensor.datatype != info.datatype:
                raise InvalidArgument(f"input {tensor.name!r}: datatype {tensor.datatype}, expected {info.datatype}")
            if tensor.shape and tuple(tensor.shape) != array.shape:
                raise InvalidArgument(f"input {tensor.name!r}: {uri} holds shape {list(array.shape)}, "
                                      f"the request says {list(tensor.shape)}")  # fmt: skip
            if not np.can_cast(array.dtype, info.dtype, casting="same_kind"):
                raise InvalidArgument(
                    f"input {tensor.name!r}: {uri} holds {array.dtype}, the model takes {info.datatype}"
                )
            check_shape(info, array.shape)
            prepared.feeds[tensor.name] = array.astype(info.dtype, copy=False)

    @staticmethod
    def _rows(prepared: Prepared) -> int:
        if not prepared.loaded.policy.batchable:
            return 1
        arrays = iter(prepared.feeds.values())
        rows = next(arrays).shape[0]
        if any(array.shape[0] != rows for array in arrays):
            sizes = {name: array.shape[0] for name, array in prepared.feeds.items()}
            raise InvalidArgument(f"inputs disagree on the batch size: {sizes}")
        return rows

    def _respond(self, prepared: Prepared, result: dict[str, np.ndarray]) -> Answer:
        """The request's answer, to be serialized as a response or a stream message."""
        loaded = prepared.loaded
        answer = Answer()
        head = answer.head
        head.model_name, head.model_version, head.id = loaded.name, loaded.version, prepared.request.id
        for info in prepared.outputs:
            answer.add_output(info.name, result[info.name], info.datatype)
        self._feedback.offer(prepared.feedback_id, loaded.name, loaded.version, prepared.feeds, result)
        return answer

    def _observe(self, prepared: Prepared | None, model: str, kind: str, status: str, started: float) -> None:
        key = (model, kind, status)
        latency = self._observers.get(key)
        if latency is None:
            latency = self._observers[key] = self._metrics.buffered(self._metrics.latency.labels(model, kind, status))
        elapsed = time.perf_counter() - started
        latency.observe(elapsed)
        if prepared is not None:
            prepared.loaded.stats.success.add(int(elapsed * 1e9))

    def _count_failure(self, request, kind: str, err: MlaasError, started: float) -> None:
        elapsed_ns = int((time.perf_counter() - started) * 1e9)
        with contextlib.suppress(NotFound):
            self._repo.get(request.model_name).stats.fail.add(elapsed_ns)
        self._observe(None, request.model_name or "-", kind, err.code.name, started)

    async def _infer(self, request, kind: str) -> bytes:
        """The serialized ModelInferResponse."""
        started = time.perf_counter()
        try:
            prepared = self._prepare(request)
            if prepared.references:
                await self._resolve_refs(prepared)
            prepared.rows = self._rows(prepared)
            batcher = prepared.loaded.batcher
            with self._limits.held(prepared.tenant, prepared.rows):
                result = batcher.run_now(prepared.feeds, prepared.rows)
                if result is None:
                    result = await batcher.submit(prepared.feeds, prepared.rows)
            if isinstance(result, BaseException):
                raise result
            response = self._respond(prepared, result).unary()
        except MlaasError as err:
            self._count_failure(request, kind, err, started)
            raise
        except Exception as err:  # onnxruntime rejected the values
            failure = InvalidArgument(f"inference failed: {str(err).strip()[:500]}")
            self._count_failure(request, kind, failure, started)
            raise failure from None
        self._observe(prepared, prepared.loaded.name, kind, "OK", started)
        return response

    async def ModelInfer(self, request, context):
        return await self._infer(request, "unary")

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
                    self._start_stream_request(request, deliver)
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

    def _stream_failure(self, request, err: Exception) -> oip.ModelStreamInferResponse:
        message = err.message if isinstance(err, MlaasError) else f"inference failed: {str(err).strip()[:500]}"
        header = oip.ModelInferResponse(
            model_name=request.model_name, model_version=request.model_version, id=request.id
        )
        return oip.ModelStreamInferResponse(error_message=message, infer_response=header)

    def _start_stream_request(self, request, deliver) -> None:
        """Starts one streamed request; its answer goes to `deliver`, at once when it can."""
        started = time.perf_counter()
        try:
            prepared = self._prepare(request)
            if prepared.references:
                task = asyncio.ensure_future(self._infer(request, "stream"))
                task.add_done_callback(
                    lambda t: deliver(
                        self._stream_failure(request, t.exception()) if t.exception() else stream_message(t.result())
                    )
                )
                return
            prepared.rows = self._rows(prepared)
            batcher = prepared.loaded.batcher
            self._limits.take(prepared.tenant, prepared.rows)  # given back when its answer is made
            try:
                outcome = batcher.run_now(prepared.feeds, prepared.rows)
                if outcome is None:
                    future = batcher.submit(prepared.feeds, prepared.rows)
            except MlaasError:
                self._limits.give_back(prepared.tenant, prepared.rows)
                raise
        except MlaasError as err:
            self._count_failure(request, "stream", err, started)
            deliver(self._stream_failure(request, err))
            return
        if outcome is not None:
            deliver(self._stream_answer(request, prepared, outcome, started))
        elif future.done():  # ran inline: answer now rather than one loop turn later
            deliver(self._stream_answer(request, prepared, _outcome(future), started))
        else:
            future.add_done_callback(
                lambda f: (
                    self._limits.give_back(prepared.tenant, prepared.rows)
                    if f.cancelled()
                    else deliver(self._stream_answer(request, prepared, _outcome(f), started))
                ),
            )

    def _stream_answer(
        self, request, prepared: Prepared, outcome: dict[str, np.ndarray] | BaseException, started: float
    ) -> oip.ModelStreamInferResponse | bytes:
        """The stream message for a request's outputs (serialized), or for the error that ended it."""
        self._limits.give_back(prepared.tenant, prepared.rows)
        error = outcome if isinstance(outcome, BaseException) else None
        if error is None:
            try:
                message = self._respond(prepared, outcome).streamed()
            except MlaasError as err:
                error = err
            else:
                self._observe(prepared, prepared.loaded.name, "stream", "OK", started)
                return message
        if not isinstance(error, MlaasError):
            error = InvalidArgument(f"inference failed: {str(error).strip()[:500]}")
        self._count_failure(request, "stream", error, started)
        return self._stream_failure(request, error)


def _outcome(future: asyncio.Future) -> dict[str, np.ndarray] | BaseException:
    error = future.exception()
    return error if error is not None else future.result()
