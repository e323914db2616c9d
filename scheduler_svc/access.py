"""Who may see and steer what in the scheduler, free of transport: a deployment is seen by its
owner and the tenants holding a lease on it, and steered by its owner alone (or a role that acts
for owners); a training job is seen by the tenant that started it. The mesh's roles (the Monitor,
the registry) look after every tenant's. Without auth, the one user sees and steers everything.
What a tenant may not see is NOT_FOUND, as if it did not exist."""

from __future__ import annotations

from mlaas.errors import NotFound, PermissionDenied
from mlaas.services.auth import MONITOR, REGISTRY, Authenticator
from mlaas.v1 import scheduler_pb2
from scheduler_svc.lifecycle import Lifecycle


class Access:
    def __init__(self, authenticator: Authenticator, lifecycle: Lifecycle):
        self._auth = authenticator
        self._lifecycle = lifecycle

    def sees_all(self, tenant: str) -> bool:
        """Open mode's single user, and the roles that look after every tenant's deployments."""
        return not self._auth.enabled or self._auth.is_role(tenant, MONITOR, REGISTRY)

    def visible(self, deployment: scheduler_pb2.Deployment, tenant: str) -> scheduler_pb2.Deployment:
        """The deployment, if its owner or a tenant holding a lease on it asks."""
        if (
            not self.sees_all(tenant)
            and deployment.tenant != tenant
            and tenant not in self._lifecycle.leases(deployment.id).values()
        ):
            raise NotFound(f"deployment {deployment.id!r} not found")
        return deployment

    def owned(
        self, deployment: scheduler_pb2.Deployment, tenant: str, action: str, for_owner: str = ""
    ) -> scheduler_pb2.Deployment:
        """The deployment, if `tenant` may change it: its owner (or the role `for_owner`, which
        acts for owners). Lease holders use a deployment; they do not steer it."""
        self.visible(deployment, tenant)
        if not self._auth.enabled or tenant == deployment.tenant or self._auth.is_role(tenant, for_owner):
            return deployment
        raise PermissionDenied(f"only the owner of deployment {deployment.id} may {action} it")

    def acts_for_owners(self, tenant: str, owner: str) -> bool:
        """`tenant` is `owner`, or the Monitor (which retrains every tenant's deployments)."""
        return not self._auth.enabled or tenant == owner or self._auth.is_role(tenant, MONITOR)

    def same_owner(self, one: str, other: str) -> bool:
        """Two records have the same owner (always, without auth: one user owns everything)."""
        return not self._auth.enabled or one == other

    def job(self, job: scheduler_pb2.TrainingJob, tenant: str) -> scheduler_pb2.TrainingJob:
        """The job, if the tenant that started it (or a mesh role) asks; NotFound otherwise."""
        if self._auth.enabled and job.tenant != tenant and not self._auth.is_role(tenant, MONITOR, REGISTRY):
            raise NotFound(f"training job {job.id!r} not found")
        return job
