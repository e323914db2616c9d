"""What callers read from the Monitor, free of transport (servicer.py adapts it, having checked
the caller): a deployment's drift report, its drift events a page at a time, its retrainings, and
the watches that follow new events and every step of each retraining as they are stored."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from mlaas.services.paging import decode_page_token, encode_page_token, is_offset, page_size, query_key
from mlaas.v1 import monitor_pb2
from monitor_svc.changes import Changes
from monitor_svc.deployments import DeploymentMonitors
from monitor_svc.store import MonitorStore

M = monitor_pb2
WATCH_POLL_SECONDS = 1.0  # a watch looks again at least this often, and at once when told of a change
RECENT_EVENTS = 20  # in a drift report
# Whether a watch goes on: its client is still there and may still read the deployment (it
# raises once the caller's lease is gone).
GoOn = Callable[[], bool]


class Views:
    def __init__(self, store: MonitorStore, deployments: DeploymentMonitors, changes: Changes):
        self._store = store
        self._deployments = deployments
        self._changes = changes

    def report(self, deployment_id: str) -> M.DriftReport:
        return self._deployments.drift_report(deployment_id, RECENT_EVENTS)

    def events(self, request: M.ListDriftEventsRequest) -> M.ListDriftEventsResponse:
        limit, query = page_size(request.page_size), query_key(request)
        after = decode_page_token(request.page_token, query, is_offset) or 0
        rows = self._store.events(request.deployment_id, after, limit + 1)
        response = M.ListDriftEventsResponse(events=[M.DriftEvent.FromString(raw) for _, raw in rows[:limit]])
        if len(rows) > limit:
            response.next_page_token = encode_page_token(rows[limit - 1][0], query)
        return response

    def watch_events(self, deployment_id: str, go_on: GoOn) -> Iterator[M.DriftEvent]:
        """Drift events from now on (the report has the recent ones)."""
        seen = self._store.last_event_seq()
        while go_on():
            for seq, raw in self._store.events(deployment_id, seen):
                seen = seq
                yield M.DriftEvent.FromString(raw)
            self._changes.wait(WATCH_POLL_SECONDS)

    def retrainings(self, deployment_id: str) -> list[M.Retraining]:
        return [M.Retraining.FromString(raw) for raw in self._store.retrainings(deployment_id)]

    def watch_retrainings(self, deployment_id: str, go_on: GoOn) -> Iterator[M.Retraining]:
        """The deployment's retrainings as they are now, then every state each one goes through
        (a record stored again unchanged is not sent again)."""
        seen = self._store.retraining_log_end()
        sent: dict[str, bytes] = {}

        def fresh(raw: bytes) -> Iterator[M.Retraining]:
            record = M.Retraining.FromString(raw)
            if sent.get(record.id) != raw:
                sent[record.id] = raw
                yield record

        for raw in self._store.retrainings(deployment_id):
            yield from fresh(raw)
        while go_on():
            for seq, raw in self._store.retraining_changes(deployment_id, seen):
                seen = seq
                yield from fresh(raw)
            self._changes.wait(WATCH_POLL_SECONDS)
