"""mlaas.v1.NodeLabelsService on a runtime: labels for a STRICT deployment, kept on its node
(node_labels.py). A runtime of an OPEN deployment refuses them: the Monitor takes those."""

from __future__ import annotations

import asyncio
import logging

from inference_svc.access import CALLER_TENANT
from inference_svc.monitor_sink import MonitorConnection
from inference_svc.node_labels import NodeLabels
from mlaas.errors import FailedPrecondition, NotFound
from mlaas.services.label_store import label_pairs
from mlaas.services.servicing import maps_errors
from mlaas.v1 import node_pb2, node_pb2_grpc

log = logging.getLogger(__name__)


@maps_errors
class NodeLabelsServicer(node_pb2_grpc.NodeLabelsServiceServicer):
    def __init__(self, deployment_id: str, labels: NodeLabels | None, monitor: MonitorConnection | None):
        self._deployment = deployment_id
        self._labels = labels
        self._monitor = monitor

    async def ReportNodeLabels(self, request_iterator, context):
        if self._labels is None:
            raise FailedPrecondition("this runtime's deployment is not STRICT: report its labels to the Monitor")
        tenant = CALLER_TENANT.get()  # labels match the caller's own requests only (access.feedback_id)
        namespace = f"{tenant}/" if tenant else ""
        accepted = waiting = 0
        async for request in request_iterator:
            if request.deployment_id != self._deployment:
                raise NotFound(f"deployment {request.deployment_id!r} is not served here")
            stored, unmatched = await asyncio.to_thread(self._labels.add_labels, label_pairs(request.labels, namespace))
            accepted, waiting = accepted + stored, waiting + unmatched
        if self._monitor is not None:
            try:
                await self._labels.flush(self._monitor)
            except Exception as err:  # the labels are safe on the node; the counts go next time
                log.warning("label counts kept to send again: %s", err)
        return node_pb2.ReportNodeLabelsResponse(accepted=accepted, unmatched=waiting)
