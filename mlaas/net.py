"""Small networking helpers: free ports and waiting for a gRPC server to be healthy."""

from __future__ import annotations

import socket
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (the caller should bind it promptly)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_healthy(address: str, timeout: float = 30.0, service: str = "") -> None:
    """Polls the gRPC health service until it reports SERVING; raises TimeoutError."""
    deadline = time.monotonic() + timeout
    last_error = "no answer"
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=1.0)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
                last_error = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
            except grpc.RpcError as err:
                last_error = err.code().name
            time.sleep(0.05)
    raise TimeoutError(f"{address} not healthy within {timeout:.0f}s (last: {last_error})")
