"""mlaas.v1.NodeLabelsService on a runtime: labels for a STRICT deployment, kept on its node
(node_labels.py). A runtime of an OPEN deployment refuses them: the Monitor takes those."""

from __future__ import annotations

from inference_svc.access import CALLER_TENANT
from inference_svc.monitor_sink import MonitorConnection
from inference_svc.node_labels import NodeLabels
from mlaas.errors import FailedPrecondition
from mlaas.services.servicing import maps_errors
from mlaas.v1 import node_pb2, node_pb2_grpc


@maps_errors
class NodeLabelsServicer(node_pb2_grpc.NodeLabelsServiceServicer):
    def __init__(self, labels: NodeLabels | None, monitor: MonitorConnection | None):
        self._labels = labels
        self._monitor = monitor

    async def ReportNodeLabels(self, request_iterator, context):
        if self._labels is None:
            raise FailedPrecondition("this runtime's deployment is not STRICT: report its labels to the Monitor")
        tenant = CALLER_TENANT.get()  # labels match the caller's own requests only (access.feedback_id)
        accepted, waiting = await self._labels.report(request_iterator, f"{tenant}/" if tenant else "", self._monitor)
        return node_pb2.ReportNodeLabelsResponse(accepted=accepted, unmatched=waiting)
