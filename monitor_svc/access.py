"""Who may feed and read a deployment's monitoring, and whose model the feedback is about.

- Tenants: whoever the scheduler shows the deployment to (its owner and the tenants holding a
  lease on it), asked with the caller's own token so that the visibility rule lives in one
  place; changing the policy is the owner's. An answer that allows is remembered for a short
  while, a refusal never is.
- A runtime: only the deployment its credential was minted for; the model name and version of
  its feedback are the credential's (the scheduler minted it from the deployment record), never
  what the message says.
- The monitor's role reads everything (the operator's CLI); the rules of mlaas.services.permissions keep
  every other role out before this is asked.
- Labels: a tenant's label ids match only the requests it made itself (label_namespace).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import grpc

from mlaas.client import SchedulerClient
from mlaas.errors import DeadlineExceeded, InvalidArgument, NotFound, PermissionDenied, Unavailable
from mlaas.refs import parse_ref
from mlaas.services.auth import RUNTIME, Authenticator, bearer_token
from mlaas.services.live_scopes import LiveScopes
from mlaas.v1 import scheduler_pb2

# (deployment id, the caller's token) -> the deployment, as the scheduler shows it to that caller
GetDeployment = Callable[[str, str | None], scheduler_pb2.Deployment]


def scheduler_lookup(scheduler: SchedulerClient) -> GetDeployment:
    """Asks the scheduler as the caller (its token), over the one channel app.py made."""

    def get(deployment_id: str, token: str | None) -> scheduler_pb2.Deployment:
        return scheduler.with_token(token).get(deployment_id)

    return get


class DeploymentAccess:
    def __init__(
        self, auth: Authenticator, get_deployment: GetDeployment, remember_seconds: float = 2.0,
        own_token: str | None = None, scopes: LiveScopes | None = None,
    ):  # fmt: skip
        """`own_token`: the Monitor's, to ask about deployments for the mesh's roles; `scopes`:
        whether a runtime's deployment still lives (its credential is void once it is gone)."""
        self._auth = auth
        self._scopes = scopes
        self._get = get_deployment
        self._own_token = own_token
        self._remember = remember_seconds
        self._allowed: dict[tuple[str, str], tuple[float, str]] = {}  # (tenant, deployment) -> (until, owner)
        self._strict: dict[str, bool] = {}  # deployment -> STRICT (a deployment's mode never changes)
        self._lock = threading.Lock()

    def check(self, context: grpc.ServicerContext, deployment_id: str, owner_only: bool = False) -> None:
        """Returns when the caller may use `deployment_id`; raises NotFound (as the scheduler does
        for a deployment the caller cannot see), PermissionDenied (`owner_only`, for a lease
        holder) or Unavailable when the scheduler cannot answer."""
        if not self._auth.enabled:
            return
        metadata = context.invocation_metadata()
        identity = self._auth.identity(metadata)
        if identity.role == RUNTIME:
            if identity.scope != deployment_id:
                raise NotFound(f"deployment {deployment_id!r} not found")
            if self._scopes is not None:
                self._scopes.check(identity)
            return
        if identity.role:
            return
        key = (identity.tenant, deployment_id)
        with self._lock:
            until, owner = self._allowed.get(key, (0.0, ""))
        if until <= time.monotonic():
            deployment = self._get(deployment_id, bearer_token(metadata))
            owner = deployment.tenant
            with self._lock:
                self._allowed[key] = (time.monotonic() + self._remember, owner)
                self._strict[deployment_id] = deployment.mode == scheduler_pb2.PLACEMENT_MODE_STRICT
        if owner_only and owner != identity.tenant:
            raise PermissionDenied(f"only the owner of deployment {deployment_id} may change its monitoring")

    def tenant(self, context: grpc.ServicerContext) -> str:
        """The calling tenant ("" without auth: one trusted user)."""
        return self._auth.tenant(context.invocation_metadata()) if self._auth.enabled else ""

    def is_strict(self, deployment_id: str) -> bool:
        """Whether the deployment is STRICT, as its record says (a tenant's `check` asked the
        scheduler already; a deployment's mode never changes), whoever calls. Unavailable while
        the scheduler cannot say. Without auth (one trusted user) the scheduler is asked too (a
        STRICT deployment's labels came in before its first summaries did), and a Monitor with no
        scheduler to ask goes by the deployment's summaries."""
        if deployment_id not in self._strict:
            try:
                deployment = self._get(deployment_id, self._own_token)
            except NotFound:
                return False
            except (Unavailable, DeadlineExceeded):
                if self._auth.enabled:
                    raise
                return False
            with self._lock:
                self._strict[deployment_id] = deployment.mode == scheduler_pb2.PLACEMENT_MODE_STRICT
        return self._strict[deployment_id]

    def label_namespace(self, context: grpc.ServicerContext) -> str:
        """What a tenant's label ids are put under: the runtimes record each request under its
        caller's tenant (inference_svc/access.py:feedback_id), so a lease holder's labels match
        only its own requests, and say nothing of the owner's. The monitor's role (an operator)
        names full ids."""
        if not self._auth.enabled:
            return ""
        identity = self._auth.identity(context.invocation_metadata())
        return "" if identity.role else f"{identity.tenant}/"

    def feedback_model(self, context: grpc.ServicerContext, claimed: str) -> tuple[str, set[int] | None]:
        """(model name, the versions it may report: None for any) of feedback: the runtime's
        credential says, whatever the message claims; open mode has one trusted user and no
        credentials, and takes the claim."""
        identity = self._auth.identity(context.invocation_metadata())
        if identity.role == RUNTIME:
            ref = parse_ref(identity.model)
            return ref.name, {ref.version} | ({identity.challenger} if identity.challenger else set())
        return claimed, None


def check_versions(deployment_id: str, reported: set[int], allowed: set[int] | None) -> None:
    stray = sorted(reported - allowed) if allowed is not None else []
    if stray:
        raise InvalidArgument(f"feedback of version(s) {stray} does not come from deployment {deployment_id}")
