"""What every deployment adds to the scheduler's running totals, kept in Redis beside the records
and changed in the same transaction as the record: the resources its replicas hold on each node
(CACHED ones apart, since placement may evict them) and what its tenant owns. Placement and
quotas then read a few counters instead of parsing every deployment (at 10,000 live deployments
that parse cost most of a placement).

`contribution` is a pure function of one deployment; the store adds `after - before` on every
change, so the totals equal the sum over the records as long as every write goes through it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

from mlaas.v1 import scheduler_pb2
from scheduler_svc.states import HOLDING, TERMINAL

S = scheduler_pb2
RESOURCE_FIELDS = ("cpu_millicores", "memory_bytes", "gpus")
HELD, CACHED = "held", "cached"
# Not counted against a tenant's quota: ended, or evictable when room is needed.
NOT_OWNED = frozenset({*TERMINAL, S.DEPLOYMENT_STATE_CACHED})


def allocation_field(node: str, kind: str, resource: str) -> str:
    return f"alloc|{node}|{kind}|{resource}"


def tenant_field(tenant: str, what: str) -> str:
    return f"tenant|{tenant}|{what}"


def contribution(deployment: scheduler_pb2.Deployment | None) -> Counter[str]:
    counts: Counter[str] = Counter()
    if deployment is None:
        return counts
    if deployment.state in HOLDING:
        kind = CACHED if deployment.state == S.DEPLOYMENT_STATE_CACHED else HELD
        for replica in deployment.replica_status:
            for resource in RESOURCE_FIELDS:
                counts[allocation_field(replica.node, kind, resource)] += getattr(deployment.resources, resource)
    if deployment.state not in NOT_OWNED:
        counts[tenant_field(deployment.tenant, "owned")] += 1
    if deployment.state == S.DEPLOYMENT_STATE_QUEUED:
        counts[tenant_field(deployment.tenant, "queued")] += 1
    return counts


def change(before: scheduler_pb2.Deployment | None, after: scheduler_pb2.Deployment | None) -> dict[str, int]:
    """The nonzero increments that move the totals from `before` to `after`."""
    delta = contribution(after)
    delta.subtract(contribution(before))
    return {name: value for name, value in delta.items() if value}


def totals(deployments: Iterable[scheduler_pb2.Deployment]) -> Counter[str]:
    """The totals derived from scratch (rebuilding them, and checking them in tests)."""
    summed: Counter[str] = Counter()
    for deployment in deployments:
        summed.update(contribution(deployment))
    return summed


def allocations(stored: Mapping[str, int], include_cached: bool) -> dict[str, list[int]]:
    """node -> [cpu, memory, gpus] its replicas hold, from the stored totals."""
    used: dict[str, list[int]] = {}
    for name, value in stored.items():
        if not name.startswith("alloc|"):
            continue
        node, kind, resource = name.removeprefix("alloc|").rsplit("|", 2)
        if kind == HELD or include_cached:
            used.setdefault(node, [0, 0, 0])[RESOURCE_FIELDS.index(resource)] += value
    return used


def owned(stored: Mapping[str, int], tenant: str) -> tuple[int, int]:
    """(deployments the tenant owns, of those QUEUED), from the stored totals."""
    return stored.get(tenant_field(tenant, "owned"), 0), stored.get(tenant_field(tenant, "queued"), 0)
