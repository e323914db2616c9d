"""mlaas.v1.RuntimeService on a runtime: its replica's load (load.py), for the scheduler's
autoscaler. Who may ask is inference_svc/access.py's rule: the runtime's operator only."""

from __future__ import annotations

from inference_svc.load import ReplicaLoad
from mlaas.services.servicing import maps_errors
from mlaas.v1 import runtime_pb2_grpc


@maps_errors
class RuntimeServicer(runtime_pb2_grpc.RuntimeServiceServicer):
    def __init__(self, load: ReplicaLoad):
        self._load = load

    async def GetLoad(self, request, context):
        return self._load.reading()
