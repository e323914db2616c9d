"""mlaas.v1.MonitorService: feedback and labels in, drift events and retrainings out. Each rpc
checks its caller (access.py) and adapts a transport-free core: ingest.py (feedback, labels),
policies.py, views.py (reports, events, retrainings and their watches)."""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from mlaas.errors import InvalidArgument
from mlaas.services.auth import bearer_token
from mlaas.services.servicing import maps_errors
from mlaas.v1 import monitor_pb2, monitor_pb2_grpc
from monitor_svc.access import DeploymentAccess
from monitor_svc.ingest import Ingest
from monitor_svc.policies import Policies
from monitor_svc.views import GoOn, Views

M = monitor_pb2


def _until_gone(requests: Iterator) -> Iterator:
    """The client's messages; a client that goes away mid-stream (a runtime draining) just ends
    it: what arrived before is kept."""
    try:
        yield from requests
    except grpc.RpcError:
        return


@maps_errors
class MonitorServicer(monitor_pb2_grpc.MonitorServiceServicer):
    def __init__(self, access: DeploymentAccess, ingest: Ingest, policies: Policies, views: Views):
        self._access = access
        self._ingest = ingest
        self._policies = policies
        self._views = views

    def _check(self, context, deployment_id: str, owner_only: bool = False) -> None:
        if not deployment_id:
            raise InvalidArgument("deployment_id is required")
        self._access.check(context, deployment_id, owner_only)

    def _watching(self, context, deployment_id: str) -> GoOn:
        self._check(context, deployment_id)

        def go_on() -> bool:
            self._check(context, deployment_id)  # a lease dropped meanwhile ends the watch
            return context.is_active()

        return go_on

    def IngestFeedback(self, request_iterator, context):
        def allowed(request: M.IngestFeedbackRequest) -> tuple[str, set[int] | None]:
            self._check(context, request.deployment_id)
            return self._access.feedback_model(context, request.model_name)

        return self._ingest.feedback_stream(_until_gone(request_iterator), allowed)

    def ReportLabels(self, request_iterator, context):
        namespace = self._access.label_namespace(context)
        return self._ingest.labels_stream(_until_gone(request_iterator), lambda d: self._check(context, d), namespace)

    def ReportLabelBatch(self, request, context):
        batch = M.ReportLabelsRequest(deployment_id=request.deployment_id, labels=request.labels)
        stored = self.ReportLabels(iter([batch]), context)
        return M.ReportLabelBatchResponse(accepted=stored.accepted, unmatched=stored.unmatched)

    def GetDriftReport(self, request, context):
        self._check(context, request.deployment_id)
        return M.GetDriftReportResponse(report=self._views.report(request.deployment_id))

    def ListDriftEvents(self, request, context):
        self._check(context, request.deployment_id)
        return self._views.events(request)

    def WatchDrift(self, request, context):
        for event in self._views.watch_events(request.deployment_id, self._watching(context, request.deployment_id)):
            yield M.WatchDriftResponse(event=event)

    def SetPolicy(self, request, context):
        self._check(context, request.deployment_id, owner_only=True)
        tenant, token = self._access.tenant(context), bearer_token(context.invocation_metadata())
        return M.SetPolicyResponse(policy=self._policies.set(request.deployment_id, request.policy, tenant, token))

    def GetPolicy(self, request, context):
        self._check(context, request.deployment_id)
        return M.GetPolicyResponse(policy=self._policies.get(request.deployment_id))

    def ListRetrainings(self, request, context):
        self._check(context, request.deployment_id)
        return M.ListRetrainingsResponse(retrainings=self._views.retrainings(request.deployment_id))

    def WatchRetraining(self, request, context):
        go_on = self._watching(context, request.deployment_id)
        for record in self._views.watch_retrainings(request.deployment_id, go_on):
            yield M.WatchRetrainingResponse(retraining=record)
