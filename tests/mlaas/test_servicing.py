"""Error mapping of every servicer (mlaas/services/servicing.py), on real gRPC servers: the mesh's own
errors keep their status and message; anything else is a bug, answered INTERNAL without its
text (which may hold paths or data) and logged with its traceback, on sync and asyncio servers
alike."""

from __future__ import annotations

import asyncio
import logging
from concurrent import futures

import grpc
import pytest

from mlaas.errors import NotFound
from mlaas.oip import open_inference_v2_pb2 as oip
from mlaas.oip import open_inference_v2_pb2_grpc as oip_grpc
from mlaas.services.servicing import maps_errors


@maps_errors
class Failing(oip_grpc.GRPCInferenceServiceServicer):
    def ServerLive(self, request, context):
        raise KeyError("/secret/path")

    def ServerReady(self, request, context):
        raise NotFound("no such model")


@maps_errors
class FailingAio(oip_grpc.GRPCInferenceServiceServicer):
    async def ServerLive(self, request, context):
        raise KeyError("/secret/path")

    async def ServerReady(self, request, context):
        raise NotFound("no such model")

    async def ModelStreamInfer(self, request_iterator, context):
        async for _ in request_iterator:
            yield oip.ModelStreamInferResponse(error_message="first")
            raise ValueError("/secret/data")


def _expect(call, code: grpc.StatusCode, message: str) -> None:
    with pytest.raises(grpc.RpcError) as failed:
        call()
    assert failed.value.code() == code and failed.value.details() == message


def test_a_sync_servicer_answers_internal_for_a_bug_and_logs_it(caplog):
    server = grpc.server(futures.ThreadPoolExecutor(2))
    oip_grpc.add_GRPCInferenceServiceServicer_to_server(Failing(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel, caplog.at_level(logging.ERROR):
            stub = oip_grpc.GRPCInferenceServiceStub(channel)
            _expect(lambda: stub.ServerLive(oip.ServerLiveRequest()), grpc.StatusCode.INTERNAL,
                    "internal error in ServerLive: KeyError")  # fmt: skip
            _expect(lambda: stub.ServerReady(oip.ServerReadyRequest()), grpc.StatusCode.NOT_FOUND, "no such model")
    finally:
        server.stop(0)
    assert "unexpected error in ServerLive" in caplog.text and "/secret/path" in caplog.text  # the traceback


def test_an_asyncio_servicer_answers_internal_for_a_bug_in_unary_and_stream_calls(caplog):
    async def scenario():
        server = grpc.aio.server()
        oip_grpc.add_GRPCInferenceServiceServicer_to_server(FailingAio(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = oip_grpc.GRPCInferenceServiceStub(channel)
                results = []
                for call in (stub.ServerLive(oip.ServerLiveRequest()), stub.ServerReady(oip.ServerReadyRequest())):
                    try:
                        await call
                    except grpc.aio.AioRpcError as err:
                        results.append((err.code(), err.details()))
                stream = stub.ModelStreamInfer(iter([oip.ModelInferRequest()]))
                received = []
                try:
                    async for message in stream:
                        received.append(message.error_message)
                except grpc.aio.AioRpcError as err:
                    results.append((err.code(), err.details()))
                return results, received
        finally:
            await server.stop(0)

    with caplog.at_level(logging.ERROR):
        results, received = asyncio.run(scenario())
    assert results == [
        (grpc.StatusCode.INTERNAL, "internal error in ServerLive: KeyError"),
        (grpc.StatusCode.NOT_FOUND, "no such model"),
        (grpc.StatusCode.INTERNAL, "internal error in ModelStreamInfer: ValueError"),
    ]
    assert received == ["first"]
    assert "unexpected error in ModelStreamInfer" in caplog.text and "/secret/data" in caplog.text
