"""Placing replicas against live capacity: the pure `placement.place` applied to the nodes'
current allocations (the store's running totals, tallies.py), under one Redis lock, so that two
placements (in any scheduler process) never count on the same free capacity. CACHED deployments
are evicted, least recently used first, only when the request then fits."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

import redis

from mlaas.v1 import scheduler_pb2, types_pb2
from scheduler_svc import tallies
from scheduler_svc.lifecycle import Lifecycle
from scheduler_svc.placement import Node, Placement, place
from scheduler_svc.settings import SchedulerSettings
from scheduler_svc.store import DeploymentStore

S = scheduler_pb2
PLACEMENT_LOCK = "mlaas:placement-lock"
Recorded = TypeVar("Recorded")


def nodes_with_allocations(
    settings: SchedulerSettings,
    store: DeploymentStore,
    include_cached: bool = True,
    jobs: Iterable[tuple[str, types_pb2.Resources]] = (),
) -> list[Node]:
    """The configured nodes with what deployments' replicas (CACHED ones too, if asked) and
    running training `jobs` (node, resources) hold on them."""
    held = tallies.allocations(store.totals(), include_cached)
    used = {n.name: list(held.get(n.name, (0, 0, 0))) for n in settings.nodes}
    for node, res in jobs:
        if node in used:
            totals = used[node]
            totals[0] += res.cpu_millicores
            totals[1] += res.memory_bytes
            totals[2] += res.gpus
    nodes = []
    for n in settings.nodes:
        cpu, memory, gpus = used[n.name]
        nodes.append(Node(n.name, n.allocatable, (cpu, memory, gpus), n.labels))
    return nodes


def _wanted(deployment: scheduler_pb2.Deployment, count: int) -> tuple[tuple[int, int, int], int, str | None]:
    """(resources of one replica, replicas, the STRICT node or None): the arguments of `place`."""
    res = deployment.resources
    strict = deployment.node if deployment.mode == S.PLACEMENT_MODE_STRICT else None
    return (res.cpu_millicores, res.memory_bytes, res.gpus), count, strict


def _try(deployment: scheduler_pb2.Deployment, nodes: list[Node]) -> Placement:
    need, count, strict = _wanted(deployment, deployment.replicas)
    return place(need, count, nodes, strict)


class Placer:
    def __init__(
        self,
        settings: SchedulerSettings,
        client: redis.Redis,
        store: DeploymentStore,
        lifecycle: Lifecycle,
        jobs: Callable[[], Iterable[tuple[str, types_pb2.Resources]]] = list,
    ):
        self._settings = settings
        self._redis = client
        self._store = store
        self._lifecycle = lifecycle
        self._jobs = jobs  # the running training jobs' allocations

    def _evictable_counted_free(self) -> list[Node]:
        """The nodes as a quick look without the lock sees them: cached replicas' room free."""
        return nodes_with_allocations(self._settings, self._store, include_cached=False, jobs=self._jobs())

    def might_fit(self, deployments: Iterable[scheduler_pb2.Deployment]) -> list[scheduler_pb2.Deployment]:
        """Those of `deployments` that the free capacity could hold now, evicting cached ones if
        need be (a quick look: `place` decides)."""
        nodes = self._evictable_counted_free()
        return [d for d in deployments if _try(d, nodes).placed]

    def first_look(self, deployment: scheduler_pb2.Deployment) -> Placement:
        """Where the deployment would go now, or why it cannot (the same quick look)."""
        return _try(deployment, self._evictable_counted_free())

    def place(
        self, deployment: scheduler_pb2.Deployment, count: int, record: Callable[[tuple[str, ...]], Recorded]
    ) -> tuple[Placement, Recorded | None]:
        """Chooses nodes for `count` more replicas of `deployment` and, still under the lock,
        calls `record(nodes)` to write them down. Returns the placement (with its reason when it
        failed) and what `record` returned."""
        need, _, strict = _wanted(deployment, count)

        def attempt(include_cached: bool = True) -> Placement:
            nodes = nodes_with_allocations(self._settings, self._store, include_cached, self._jobs())
            return place(need, count, nodes, strict)

        with self._redis.lock(PLACEMENT_LOCK, timeout=30, blocking_timeout=30):
            placement = attempt()
            if not placement.placed and attempt(include_cached=False).placed:
                for victim in self._lifecycle.cached_by_age(node=strict):
                    self._lifecycle.destroy(victim, f"evicted from the cache to place {deployment.id}")
                    placement = attempt()
                    if placement.placed:
                        break
            if not placement.placed:
                return placement, None
            return placement, record(placement.nodes)
