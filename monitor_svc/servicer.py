"""mlaas.v1.MonitorService: feedback and labels in, drift events and retrainings out. Each rpc
checks its caller (access.py) and adapts a transport-free core: ingest.py (feedback, labels),
policies.py, deployments.py (the monitors, their reports)."""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from mlaas.errors import InvalidArgument
from mlaas.services.auth import bearer_token
from mlaas.services.label_store import label_pairs
from mlaas.services.paging import decode_page_token, encode_page_token, is_offset, page_size, query_key
from mlaas.services.servicing import maps_errors
from mlaas.v1 import monitor_pb2, monitor_pb2_grpc
from monitor_svc.access import DeploymentAccess
from monitor_svc.changes import Changes
from monitor_svc.deployments import DeploymentMonitors
from monitor_svc.ingest import Ingest
from monitor_svc.policies import Policies
from monitor_svc.store import MonitorStore

M = monitor_pb2
WATCH_POLL_SECONDS = 1.0
RECENT_EVENTS = 20


def _until_gone(requests: Iterator) -> Iterator:
    """The client's messages; a client that goes away mid-stream (a runtime draining) just ends
    it: what arrived before is kept."""
    try:
        yield from requests
    except grpc.RpcError:
        return


@maps_errors
class MonitorServicer(monitor_pb2_grpc.MonitorServiceServicer):
    def __init__(
        self, store: MonitorStore, deployments: DeploymentMonitors, changes: Changes, access: DeploymentAccess,
        ingest: Ingest, policies: Policies,
    ):  # fmt: skip
        self._ingest = ingest
        self._policies = policies
        self._store = store
        self._deployments = deployments
        self._changes = changes
        self._access = access

    def IngestFeedback(self, request_iterator, context):
        accepted, edges = 0, None
        for request in _until_gone(request_iterator):
            self._check(context, request.deployment_id)
            rows, asked = self._ingest.feedback(request, *self._access.feedback_model(context, request.model_name))
            accepted, edges = accepted + rows, asked or edges
        return M.IngestFeedbackResponse(accepted_rows=accepted, summary_edges=edges)

    def ReportLabels(self, request_iterator, context):
        accepted = unmatched = 0
        namespace = self._access.label_namespace(context)
        for request in _until_gone(request_iterator):
            self._check(context, request.deployment_id)
            taken, waiting = self._ingest.labels(request.deployment_id, label_pairs(request.labels, namespace))
            accepted, unmatched = accepted + taken, unmatched + waiting
        return M.ReportLabelsResponse(accepted=accepted, unmatched=unmatched)

    def _check(self, context, deployment_id: str, owner_only: bool = False) -> None:
        if not deployment_id:
            raise InvalidArgument("deployment_id is required")
        self._access.check(context, deployment_id, owner_only)

    def GetDriftReport(self, request, context):
        self._check(context, request.deployment_id)
        return M.GetDriftReportResponse(report=self._deployments.drift_report(request.deployment_id, RECENT_EVENTS))

    def ListDriftEvents(self, request, context):
        self._check(context, request.deployment_id)
        limit, query = page_size(request.page_size), query_key(request)
        after = decode_page_token(request.page_token, query, is_offset) or 0
        rows = self._store.events(request.deployment_id, after, limit + 1)
        response = M.ListDriftEventsResponse(events=[M.DriftEvent.FromString(raw) for _, raw in rows[:limit]])
        if len(rows) > limit:
            response.next_page_token = encode_page_token(rows[limit - 1][0], query)
        return response

    def WatchDrift(self, request, context):
        """Drift events from now on (GetDriftReport has the recent ones)."""
        self._check(context, request.deployment_id)
        seen = self._store.last_event_seq()
        while context.is_active():
            self._check(context, request.deployment_id)  # a lease dropped meanwhile ends the watch
            for seq, raw in self._store.events(request.deployment_id, seen):
                seen = seq
                yield M.WatchDriftResponse(event=M.DriftEvent.FromString(raw))
            self._changes.wait(WATCH_POLL_SECONDS)

    def SetPolicy(self, request, context):
        self._check(context, request.deployment_id, owner_only=True)
        tenant, token = self._access.tenant(context), bearer_token(context.invocation_metadata())
        return M.SetPolicyResponse(policy=self._policies.set(request.deployment_id, request.policy, tenant, token))

    def GetPolicy(self, request, context):
        self._check(context, request.deployment_id)
        return M.GetPolicyResponse(policy=self._policies.get(request.deployment_id))

    def ListRetrainings(self, request, context):
        self._check(context, request.deployment_id)
        found = [M.Retraining.FromString(r) for r in self._store.retrainings(request.deployment_id)]
        return M.ListRetrainingsResponse(retrainings=found)

    def WatchRetraining(self, request, context):
        """The deployment's retrainings as they are now, then every state each one goes through."""
        self._check(context, request.deployment_id)
        seen = self._store.retraining_log_end()
        sent: dict[str, bytes] = {}

        def fresh(raw: bytes):
            record = M.Retraining.FromString(raw)
            if sent.get(record.id) != raw:
                sent[record.id] = raw
                yield M.WatchRetrainingResponse(retraining=record)

        for raw in self._store.retrainings(request.deployment_id):
            yield from fresh(raw)
        while context.is_active():
            self._check(context, request.deployment_id)  # a lease dropped meanwhile ends the watch
            changes = self._store.retraining_changes(request.deployment_id, seen)
            for seq, raw in changes:
                seen = seq
                yield from fresh(raw)
            self._changes.wait(WATCH_POLL_SECONDS)
