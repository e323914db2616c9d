"""Who may feed and read a deployment's monitoring: whoever the scheduler shows the deployment
to (its owner and the tenants holding a lease on it), and the mesh's own components (runtimes
sending feedback, the CLI of an operator holding the mesh token). The Monitor asks the scheduler
with the caller's own token, so the visibility rule lives in one place; an answer that allows is
remembered for a short while, a refusal never is."""

from __future__ import annotations

import threading
import time

import grpc

from mlaas.auth import Authenticator, bearer_token
from mlaas.client import SchedulerClient


class DeploymentAccess:
    def __init__(self, auth: Authenticator, scheduler_address: str, remember_seconds: float = 30.0):
        self._auth = auth
        self._scheduler = scheduler_address
        self._remember = remember_seconds
        self._allowed: dict[tuple[str, str], float] = {}  # (tenant, deployment) -> until (monotonic)
        self._lock = threading.Lock()

    def check(self, context: grpc.ServicerContext, deployment_id: str) -> None:
        """Returns when the caller may use `deployment_id`; raises NotFound (as the scheduler does
        for a deployment the caller cannot see) or Unavailable when the scheduler cannot answer."""
        if not self._auth.enabled:
            return
        metadata = context.invocation_metadata()
        tenant = self._auth.tenant(metadata)
        if self._auth.is_mesh(tenant):
            return
        key = (tenant, deployment_id)
        with self._lock:
            if self._allowed.get(key, 0.0) > time.monotonic():
                return
        with SchedulerClient(self._scheduler, bearer_token(metadata), timeout=10) as scheduler:
            scheduler.get(deployment_id)
        with self._lock:
            self._allowed[key] = time.monotonic() + self._remember
