"""Deploy's core, without a transport (servicer.py adapts it): checks the request, reads the
model as the caller, then answers with the deployment an idempotency key already made, a lease
on a shared deployment of the same version, or a new deployment, under the tenant's quota,
admitted to the placement queue."""

from __future__ import annotations

from mlaas.client import RegistryClient
from mlaas.errors import InvalidArgument, NotFound, ResourceExhausted
from mlaas.v1 import scheduler_pb2, types_pb2
from scheduler_svc import tallies
from scheduler_svc.autoscaling import check_policy
from scheduler_svc.lifecycle import Lifecycle
from scheduler_svc.settings import SchedulerSettings
from scheduler_svc.store import DeploymentStore, RequestKey
from scheduler_svc.waiting import WaitingRoom

S = scheduler_pb2
MAX_REPLICAS = 64


class Deploys:
    def __init__(
        self, settings: SchedulerSettings, store: DeploymentStore, lifecycle: Lifecycle, waiting_room: WaitingRoom,
        registry: RegistryClient, quotas: bool,
    ):  # fmt: skip
        """`registry`: asked with each caller's token; `quotas`: bound what one tenant owns (under auth)."""
        self._settings = settings
        self._store = store
        self._lifecycle = lifecycle
        self._waiting_room = waiting_room
        self._registry = registry
        self._quotas = quotas

    def deploy(self, request: S.DeployRequest, tenant: str, token: str | None) -> S.DeployResponse:
        """The deployment `tenant` asked for (its idempotency key's, a lease on a shared one, or a
        new one queued for placement), with its lease; `token`: the caller's, for the registry."""
        if not request.model.name:
            raise InvalidArgument("model.name is required")
        replicas = request.replicas or request.autoscaling.min_replicas or 1
        if not 1 <= replicas <= MAX_REPLICAS:
            raise InvalidArgument(f"replicas must be between 1 and {MAX_REPLICAS}")
        autoscaled = request.HasField("autoscaling")
        if autoscaled:
            cap = self._settings.max_replicas_per_tenant if self._quotas else None
            check_policy(request.autoscaling, MAX_REPLICAS, cap)
            if not request.autoscaling.min_replicas <= replicas <= request.autoscaling.max_replicas:
                raise InvalidArgument("replicas must be within the autoscaling policy's min_replicas and max_replicas")
        mode = request.mode or S.PLACEMENT_MODE_OPEN
        node_names = [n.name for n in self._settings.nodes]
        if mode == S.PLACEMENT_MODE_STRICT:
            if not request.node:
                raise InvalidArgument("STRICT placement needs node: the one node the model may run on")
            if request.node not in node_names:
                raise NotFound(f"node {request.node!r} does not exist; nodes: {', '.join(node_names)}")
        if request.backend not in ("", self._settings.backend):
            raise InvalidArgument(f"backend {request.backend!r} is not available here; use {self._settings.backend!r}")
        for field in ("cpu_millicores", "memory_bytes", "gpus"):
            if getattr(request.resources, field) < 0:
                raise InvalidArgument(f"resources.{field} must not be negative")
        model = self._registry.with_token(token).get(request.model)  # NOT_FOUND / PERMISSION_DENIED pass through
        resources = types_pb2.Resources()
        resources.CopyFrom(model.description.run_resources)
        for field in ("cpu_millicores", "memory_bytes", "gpus"):
            if getattr(request.resources, field):
                setattr(resources, field, getattr(request.resources, field))
        deployment = S.Deployment(
            model=types_pb2.ModelRef(name=model.description.name, version=model.version),
            mode=mode,
            node=request.node,
            replicas=replicas,
            resources=resources,
            tenant=tenant,
            backend=self._settings.backend,
        )
        if autoscaled:
            deployment.autoscaling.CopyFrom(request.autoscaling)
        request_key = RequestKey.of(tenant, request)
        existing = self._store.find_by_key(request_key)
        if existing is not None:
            return S.DeployResponse(deployment=existing)
        name, version = deployment.model.name, deployment.model.version
        with self._lifecycle.share_lock(name, version):
            shared = self._lifecycle.shared(name, version) if mode == S.PLACEMENT_MODE_OPEN else None
            if shared is not None and shared.trial.version and shared.tenant != tenant:
                shared = None  # its owner tries a version of its own in it: another tenant gets its own
            if autoscaled:
                # Its own, always: another tenant's traffic would scale what the owner pays for.
                shared = None
            if shared is not None and shared.mode == S.PLACEMENT_MODE_OPEN:
                if shared.state == S.DEPLOYMENT_STATE_CACHED and shared.tenant == tenant:
                    self.check_quota(tenant)  # reviving one's own cached deployment owns it again
                shared, lease_id = self._lifecycle.add_lease(shared.id, tenant)
                self._store.remember_key(request_key, shared.id)
                return S.DeployResponse(deployment=shared, lease_id=lease_id)
            self.check_quota(tenant)
            deployment, created = self._store.create(deployment, request_key)
            if not created:  # a concurrent request with the same key won
                return S.DeployResponse(deployment=deployment)
            if mode == S.PLACEMENT_MODE_OPEN and not autoscaled:  # STRICT and autoscaled ones are never shared
                self._lifecycle.mark_shared(deployment)
            deployment, lease_id = self._lifecycle.add_lease(deployment.id, tenant)
        self._waiting_room.admit(deployment)
        return S.DeployResponse(deployment=deployment, lease_id=lease_id)

    def check_quota(self, tenant: str) -> None:
        """Under auth, what one tenant owns at once is bounded, so that nobody fills the queue or
        the nodes for everyone (RESOURCE_EXHAUSTED, with the quota)."""
        if not self._quotas:
            return
        owned, queued = tallies.owned(self._store.totals(), tenant)  # cached ones go when room is needed
        if owned >= self._settings.max_deployments_per_tenant:
            raise ResourceExhausted(
                f"you own {owned} deployments, the quota (MLAAS_MAX_DEPLOYMENTS_PER_TENANT); decommission one"
            )
        if queued >= self._settings.max_queued_per_tenant:
            raise ResourceExhausted(
                f"you have {queued} deployments waiting for placement, the quota (MLAAS_MAX_QUEUED_PER_TENANT)"
            )
