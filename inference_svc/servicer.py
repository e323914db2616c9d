"""inference.GRPCInferenceService on grpc.aio: the Open Inference Protocol v2 with Triton's
streaming, configuration, statistics and repository extensions: the gRPC adapter over the data
plane (dataplane.py) and the catalog (catalog.py). Answers go out as the bytes wire.py wrote.
"""

from __future__ import annotations

import asyncio
import collections
import functools
from collections.abc import AsyncIterator

from inference_svc.catalog import LOCAL_ONLY, Catalog, LoadOptions
from inference_svc.dataplane import DataPlane, Outcome
from mlaas.errors import MlaasError, Unavailable
from mlaas.oip import open_inference_v2_pb2 as oip
from mlaas.oip import open_inference_v2_pb2_grpc as oip_grpc
from mlaas.services.repository_parameters import TRIAL
from mlaas.services.servicing import maps_errors


@maps_errors
class InferenceServicer(oip_grpc.GRPCInferenceServiceServicer):
    def __init__(self, catalog: Catalog, plane: DataPlane):
        self._catalog = catalog
        self._plane = plane
        self._stream_readers: set[asyncio.Task] = set()

    def drain(self) -> None:
        """Stops taking requests from open streams: each stream answers what it has read and then
        ends with UNAVAILABLE, so that its client reconnects (to another replica) and sends what
        was not answered again. Unary calls in flight finish as usual."""
        self._catalog.draining = True
        for reader in self._stream_readers:
            reader.cancel()

    # -- health, metadata and repository (catalog.py) -------------------------------------------

    async def ServerLive(self, request, context):
        return oip.ServerLiveResponse(live=True)

    async def ServerReady(self, request, context):
        return oip.ServerReadyResponse(ready=self._catalog.server_ready())

    async def ModelReady(self, request, context):
        return oip.ModelReadyResponse(ready=self._catalog.model_ready(request.name, request.version))

    async def ServerMetadata(self, request, context):
        return self._catalog.server_metadata()

    async def ModelMetadata(self, request, context):
        return self._catalog.model_metadata(request.name, request.version)

    async def ModelConfig(self, request, context):
        return self._catalog.model_config(request.name, request.version)

    async def ModelStatistics(self, request, context):
        return self._catalog.statistics(request.name, request.version)

    async def RepositoryIndex(self, request, context):
        return self._catalog.repository_index(request.ready)

    async def RepositoryModelLoad(self, request, context):
        caller, from_sibling = context.invocation_metadata() or (), LOCAL_ONLY in request.parameters
        await self._catalog.load(request.model_name, LoadOptions.read(request.parameters), caller, from_sibling)
        return oip.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(self, request, context):
        caller, from_sibling = context.invocation_metadata() or (), LOCAL_ONLY in request.parameters
        trial_only, credential = TRIAL in request.parameters, LoadOptions.read(request.parameters).credential
        await self._catalog.unload(request.model_name, caller, from_sibling, trial_only, credential)
        return oip.RepositoryModelUnloadResponse()

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
        if self._catalog.draining:
            reader.cancel()
        try:
            while state["reading"] or state["unanswered"]:
                if not ready:
                    waiter[0] = woken = loop.create_future()
                    await woken
                    waiter[0] = None
                    continue
                message = ready.popleft()
                if message is None:
                    if reader.done() and not reader.cancelled() and (failure := reader.exception()) is not None:
                        raise failure
                    continue
                state["unanswered"] -= 1
                yield message
            if refused:
                raise refused[0]
            if self._catalog.draining:
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
