"""Activation: a request for a deployment that scaled to zero brings a replica back, and waits
for it, free of transport (the ActivateDeployment rpc and the activator proxy adapt it).

Whoever may use the deployment (its owner, a tenant holding a lease) may wake it; anyone else
finds no such deployment. Many requests arriving together make one scale-up: the first asks for
it as the autoscaler would, the others find it UPDATING and wait with it, each until its own
deadline, woken by the deployment's events rather than by polling.
"""

from __future__ import annotations

import time
from contextlib import suppress

from mlaas.errors import DeadlineExceeded, FailedPrecondition, MlaasError
from mlaas.refs import state_name
from mlaas.v1 import scheduler_pb2
from scheduler_svc.access import Access
from scheduler_svc.states import TERMINAL
from scheduler_svc.store import DeploymentStore
from scheduler_svc.updates import Updates

S = scheduler_pb2
# The longest one wait on the events lasts, so a deadline is kept to within this.
WAKE_MS = 500


def scaled_to_zero(deployment: S.Deployment) -> bool:
    return deployment.state == S.DEPLOYMENT_STATE_READY and deployment.replicas == 0


class Activation:
    def __init__(self, store: DeploymentStore, updates: Updates, access: Access, longest_seconds: float):
        """`longest_seconds`: how long a call without a deadline waits (a replica's start timeout)."""
        self._store = store
        self._updates = updates
        self._access = access
        self._longest = longest_seconds

    def activate(self, deployment_id: str, tenant: str, timeout: float | None) -> S.Deployment:
        """The deployment once a replica of it serves, waking it if it scaled to zero; waits at
        most `timeout` seconds (None: the longest), then DEADLINE_EXCEEDED."""
        deadline = time.monotonic() + (self._longest if timeout is None else min(timeout, self._longest))
        seen = self._store.last_event_id(deployment_id)
        while True:
            deployment = self._access.visible(self._store.get(deployment_id), tenant)
            if deployment.endpoints:
                return deployment
            if deployment.state in TERMINAL:
                raise FailedPrecondition(f"deployment {deployment_id} is {state_name(deployment.state)}")
            if scaled_to_zero(deployment):
                self._wake(deployment)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                detail = f" ({deployment.reason})" if deployment.reason else ""
                raise DeadlineExceeded(
                    f"no replica of deployment {deployment_id} served in time: it is "
                    f"{state_name(deployment.state)}{detail}"
                )
            events = self._store.events(deployment_id, seen, block_ms=max(1, int(min(remaining * 1000, WAKE_MS))))
            if events:
                seen = events[-1][0]

    def _wake(self, deployment: S.Deployment) -> None:
        if not deployment.HasField("autoscaling"):
            raise FailedPrecondition(f"deployment {deployment.id} has no replica and no autoscaling to start one")
        replicas = max(deployment.autoscaling.min_replicas, 1)
        with suppress(MlaasError):  # another request (or the autoscaler, or its owner) moved it first
            self._updates.rescale(
                deployment.id, replicas, f"activated from zero to {replicas} replica(s) by a request", autoscaler=True
            )
