"""The SDK's retry policy (mlaas.client.read_retries): a read made while its service is
restarting is retried until the service is back (a real gRPC server that starts listening
0.4 s after the call), a write is not (it fails at once with UNAVAILABLE)."""

from __future__ import annotations

import threading
import time
from concurrent import futures

import grpc
import pytest

from mlaas import errors
from mlaas.client import SchedulerClient
from mlaas.services.net import free_port
from mlaas.v1 import scheduler_pb2, scheduler_pb2_grpc


class Nodes(scheduler_pb2_grpc.SchedulerServiceServicer):
    def ListNodes(self, request, context):
        return scheduler_pb2.ListNodesResponse(nodes=[scheduler_pb2.Node(name="late")])


def serve_after(port: int, delay: float, started: list) -> None:
    time.sleep(delay)
    server = grpc.server(futures.ThreadPoolExecutor(2))
    scheduler_pb2_grpc.add_SchedulerServiceServicer_to_server(Nodes(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    started.append(server)


def test_reads_are_retried_while_the_service_comes_back_and_writes_are_not():
    port = free_port()
    with SchedulerClient(f"127.0.0.1:{port}", timeout=10) as scheduler:
        began = time.monotonic()
        with pytest.raises(errors.Unavailable):
            scheduler.deploy("iris")  # a write: not retried, refused at once
        assert time.monotonic() - began < 0.4
        started: list = []
        threading.Thread(target=serve_after, args=(port, 0.4, started), daemon=True).start()
        try:
            assert [n.name for n in scheduler.nodes()] == ["late"]  # a read: retried until it is up
        finally:
            for server in started:
                server.stop(0)
