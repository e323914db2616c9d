"""Streams cannot starve a synchronous server: idle uploads (RegisterModel streams that send
only the description, as the probe did) are bounded per caller and in all, with
RESOURCE_EXHAUSTED and the limit, and unary calls and health checks of others still answer at
once. A real registry with a small thread pool."""

from __future__ import annotations

import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mlaas.v1 import registry_pb2, registry_pb2_grpc
from registry_svc.app import build_registry
from registry_svc.settings import RegistrySettings
from tests.registry_svc.helpers import describe


def wait_for(condition, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the server never counted the stream"
        time.sleep(0.01)


def test_idle_streams_are_bounded_and_others_are_still_served(tmp_path, identities):
    server = identities.server(max_workers=6, max_streams=3, max_streams_per_caller=2)
    registry = build_registry(RegistrySettings(data_dir=tmp_path / "registry", server=server)).start()
    release = threading.Event()

    def idle_upload():
        yield registry_pb2.RegisterModelRequest(description=describe("slow"))
        release.wait(60)

    def as_(tenant: str):
        return [("authorization", f"Bearer {identities.token(tenant)}")]

    try:
        with grpc.insecure_channel(f"127.0.0.1:{registry.port}") as channel:
            stub = registry_pb2_grpc.RegistryServiceStub(channel)
            health = health_pb2_grpc.HealthStub(channel)

            def open_stream(tenant):
                return stub.RegisterModel.future(idle_upload(), metadata=as_(tenant), timeout=60)

            def refusal(tenant) -> str:
                with pytest.raises(grpc.RpcError) as refused:
                    open_stream(tenant).result(timeout=10)
                assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                return refused.value.details()

            def opened(tenant, count: int):  # each counted before the next opens
                futures = []
                for n in range(1, count + 1):
                    futures.append(open_stream(tenant))
                    wait_for(lambda n=n: registry.streams.open() == already + n)
                return futures

            already = 0
            beta = opened("beta", 2)
            assert "you have 2 streams open here" in refusal("beta")
            already = 2
            alpha = opened("alpha", 1)
            assert "the server has 3 streams open" in refusal("alpha")
            for _ in range(5):  # the threads left serve everyone else at once
                assert stub.ListModels(registry_pb2.ListModelsRequest(), metadata=as_("alpha"), timeout=2) is not None
                reply = health.Check(health_pb2.HealthCheckRequest(), timeout=2)
                assert reply.status == health_pb2.HealthCheckResponse.SERVING
            release.set()  # the idle uploads end (no artifact: refused), and their places free up
            for future in beta + alpha:
                with pytest.raises(grpc.RpcError):
                    future.result(timeout=30)
            release.clear()
            again = open_stream("beta")
            release.set()
            with pytest.raises(grpc.RpcError) as ended:
                again.result(timeout=30)
            assert ended.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # served, not refused
    finally:
        release.set()
        registry.stop(0)
