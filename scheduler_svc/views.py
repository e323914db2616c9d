"""What callers read from the scheduler, free of transport (servicer.py adapts it): the
deployments a caller may see, filtered and paged, each with where the activator reaches it, and
the nodes with what is placed on them."""

from __future__ import annotations

from mlaas.errors import InvalidArgument
from mlaas.services.paging import decode_page_token, encode_page_token, page_size, query_key
from mlaas.v1 import scheduler_pb2, types_pb2
from scheduler_svc.access import Access
from scheduler_svc.jobs import JobStore
from scheduler_svc.placer import nodes_with_allocations
from scheduler_svc.settings import SchedulerSettings
from scheduler_svc.store import DeploymentStore

S = scheduler_pb2


class Views:
    def __init__(
        self, settings: SchedulerSettings, store: DeploymentStore, job_store: JobStore, access: Access,
        activator_endpoint: str = "", activator_http_endpoint: str = "",
    ):  # fmt: skip
        """`activator_endpoint`, `activator_http_endpoint`: where the activator serves ("": not)."""
        self._activator_endpoints = activator_endpoint, activator_http_endpoint
        self._settings = settings
        self._store = store
        self._job_store = job_store
        self._access = access

    def addressed(self, deployment: S.Deployment) -> S.Deployment:
        """The deployment as callers see it: with where the activator reaches it (the mesh's
        address, not part of the record)."""
        deployment.activator_endpoint, deployment.activator_http_endpoint = self._activator_endpoints
        return deployment

    def deployment(self, deployment_id: str, tenant: str) -> S.Deployment:
        return self.addressed(self._access.visible(self._store.get(deployment_id), tenant))

    def deployments(self, request: S.ListDeploymentsRequest, tenant: str) -> S.ListDeploymentsResponse:
        """The caller's deployments (a mesh role: everyone's) in the states, of the model and
        version asked for, one page of them."""
        unknown = [s for s in request.states if s not in S.DeploymentState.values()]
        if unknown:
            raise InvalidArgument(f"states {unknown} are not deployment states")
        everyone = self._access.sees_all(tenant)
        found = [
            d
            for d in self._store.list(request.states)
            if (everyone or d.tenant == tenant)
            and (not request.model_name or d.model.name == request.model_name)
            and (
                not request.model_version
                or request.model_version in {d.model.version, *(r.model_version for r in d.replica_status)}
            )
        ]
        return _page([self.addressed(d) for d in found], request)

    def nodes(self) -> list[S.Node]:
        """Every node: what it has, what deployments and running jobs hold of it, what is free."""
        nodes = []
        for node in nodes_with_allocations(self._settings, self._store, jobs=self._job_store.allocations()):
            (cpu, memory, gpus), (used_cpu, used_memory, used_gpus) = node.allocatable, node.allocated
            nodes.append(
                S.Node(
                    name=node.name,
                    allocatable=types_pb2.Resources(cpu_millicores=cpu, memory_bytes=memory, gpus=gpus),
                    allocated=types_pb2.Resources(cpu_millicores=used_cpu, memory_bytes=used_memory, gpus=used_gpus),
                    free=types_pb2.Resources(
                        cpu_millicores=cpu - used_cpu, memory_bytes=memory - used_memory, gpus=gpus - used_gpus
                    ),
                    labels=dict(node.labels),
                    backend=self._settings.backend,
                )
            )
        return nodes


def _page(found: list[S.Deployment], request: S.ListDeploymentsRequest) -> S.ListDeploymentsResponse:
    """One page, oldest first. The token holds the last deployment seen (its creation time and
    id), not an offset: deployments created or destroyed between two pages shift nothing."""
    limit, query = page_size(request.page_size), query_key(request)
    after = decode_page_token(request.page_token, query, lambda p: isinstance(p, list) and len(p) == 3)
    after = tuple(after) if after is not None else None
    ordered = sorted(found, key=_position)
    rest = [d for d in ordered if after is None or _position(d) > after]
    response = S.ListDeploymentsResponse(deployments=rest[:limit])
    if len(rest) > limit:
        response.next_page_token = encode_page_token(list(_position(rest[limit - 1])), query)
    return response


def _position(deployment: S.Deployment) -> tuple[int, int, str]:
    return deployment.created_at.seconds, deployment.created_at.nanos, deployment.id
