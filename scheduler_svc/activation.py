"""Activation: a request for a deployment that scaled to zero brings a replica back, and waits
for it, free of transport (the ActivateDeployment rpc and the activators adapt it).

Whoever may use the deployment (its owner, a tenant holding a lease) may wake it; anyone else
finds no such deployment. Many requests arriving together make one scale-up: the first asks for
it as the autoscaler would, the others find it UPDATING and wait with it, each until its own
deadline. They wait on one follower of the deployment's events (one thread and one Redis
connection per deployment waited for, however many wait), woken at each event. Waits hold
threads, so whoever adapts `activate` bounds them per caller (CallSlots).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext, suppress

import redis
from prometheus_client import CollectorRegistry, Histogram

from mlaas.errors import Cancelled, DeadlineExceeded, FailedPrecondition, MlaasError, ResourceExhausted
from mlaas.refs import state_name
from mlaas.v1 import scheduler_pb2
from scheduler_svc.access import Access
from scheduler_svc.states import TERMINAL
from scheduler_svc.store import DeploymentStore
from scheduler_svc.updates import Updates

S = scheduler_pb2
# The longest a waiter sleeps between two looks at its deployment, whatever the events say.
LOOK_SECONDS = 0.5


def scaled_to_zero(deployment: S.Deployment) -> bool:
    return deployment.state == S.DEPLOYMENT_STATE_READY and deployment.replicas == 0


class CallSlots:
    """Calls held at once: `total` in all, `per_caller` of one tenant's; beyond, RESOURCE_EXHAUSTED
    at once (a slot is taken before any wait, so that waits are bounded too)."""

    def __init__(self, total: int, per_caller: int, what: str):
        self._total, self._per_caller, self._what = total, per_caller, what
        self._lock = threading.Lock()
        self._held = Counter[str]()

    def take(self, tenant: str) -> None:
        with self._lock:
            if self._held[tenant] >= self._per_caller:
                raise ResourceExhausted(f"{self._per_caller} {self._what} of yours are held already; retry shortly")
            if self._held.total() >= self._total:
                raise ResourceExhausted(f"{self._total} {self._what} are held already; retry shortly")
            self._held[tenant] += 1

    def give_back(self, tenant: str) -> None:
        with self._lock:
            self._held[tenant] -= 1

    @contextmanager
    def held(self, tenant: str) -> Iterator[None]:
        self.take(tenant)
        try:
            yield
        finally:
            self.give_back(tenant)


class _Followed:
    """One deployment's events, read by one thread while anyone waits for them."""

    def __init__(self, store: DeploymentStore, deployment_id: str):
        self.waiters = 0
        self.generation = 0  # events seen since the follower started
        self._changed = threading.Condition()
        self._stopped = threading.Event()
        # Read now, before the first waiter looks at the deployment: nothing after its look is missed.
        seen = store.last_event_id(deployment_id)
        self._thread = threading.Thread(
            target=self._follow, args=(store, deployment_id, seen), name=f"follows {deployment_id}", daemon=True
        )
        self._thread.start()

    def _follow(self, store: DeploymentStore, deployment_id: str, seen: str) -> None:
        while not self._stopped.is_set():
            try:
                events = store.events(deployment_id, seen, block_ms=int(LOOK_SECONDS * 1000))
            except redis.RedisError:  # away: the waiters look again on their own every LOOK_SECONDS
                self._stopped.wait(LOOK_SECONDS)
                continue
            if events:
                seen = events[-1][0]
                with self._changed:
                    self.generation += 1
                    self._changed.notify_all()

    def wait(self, generation: int, timeout: float) -> None:
        """Until an event after `generation`, or `timeout` seconds."""
        with self._changed:
            self._changed.wait_for(lambda: self.generation != generation, timeout)

    def stop(self) -> None:
        self._stopped.set()


class Activation:
    def __init__(
        self, store: DeploymentStore, updates: Updates, access: Access, longest_seconds: float,
        registry: CollectorRegistry, rpc_slots: CallSlots,
    ):  # fmt: skip
        """`longest_seconds`: how long a call without a deadline waits (a replica's start
        timeout); `rpc_slots`: the bound on ActivateDeployment's waits (the scheduler's threads)."""
        self._store = store
        self._updates = updates
        self._access = access
        self._longest = longest_seconds
        self._rpc_slots = rpc_slots
        self._lock = threading.Lock()
        self._followed: dict[str, _Followed] = {}
        self._cold_starts = Histogram(
            "mlaas_scheduler_activation_seconds", "From a request waking a deployment at zero to a replica serving",
            registry=registry, buckets=(0.25, 0.5, 1, 1.5, 2, 3, 5, 10, 30, 60, 120),
        )  # fmt: skip

    def activate_for_rpc(self, deployment_id: str, tenant: str, timeout: float | None) -> S.Deployment:
        """`activate`, its wait within the caller's share of the rpc's slots (a caller refused
        a wait has still woken the deployment)."""
        return self.activate(deployment_id, tenant, timeout, slots=self._rpc_slots)

    def activate(
        self, deployment_id: str, tenant: str, timeout: float | None, wanted: Callable[[], bool] = lambda: True,
        slots: CallSlots | None = None,
    ) -> S.Deployment:  # fmt: skip
        """The deployment once a replica of it serves, waking it if it scaled to zero; waits at
        most `timeout` seconds (None: the longest), then DEADLINE_EXCEEDED, and no longer than
        its caller `wanted` it (then CANCELLED); with `slots`, the wait holds one of the caller's."""
        deadline = time.monotonic() + (self._longest if timeout is None else min(timeout, self._longest))
        deployment = self._access.visible(self._store.get(deployment_id), tenant)
        if deployment.endpoints:
            return deployment
        woke_at = time.monotonic() if scaled_to_zero(deployment) and self._wake(deployment) else None
        with slots.held(tenant) if slots is not None else nullcontext(), self._following(deployment_id) as followed:
            while True:
                generation = followed.generation
                deployment = self._access.visible(self._store.get(deployment_id), tenant)
                if deployment.endpoints:
                    if woke_at is not None:
                        self._cold_starts.observe(time.monotonic() - woke_at)
                    return deployment
                if deployment.state in TERMINAL:
                    raise FailedPrecondition(f"deployment {deployment_id} is {state_name(deployment.state)}")
                if scaled_to_zero(deployment) and self._wake(deployment):
                    woke_at = time.monotonic()
                if not wanted():
                    raise Cancelled(f"the call waiting for deployment {deployment_id} went away")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    detail = f" ({deployment.reason})" if deployment.reason else ""
                    raise DeadlineExceeded(
                        f"no replica of deployment {deployment_id} served in time: it is "
                        f"{state_name(deployment.state)}{detail}"
                    )
                followed.wait(generation, min(remaining, LOOK_SECONDS))

    @contextmanager
    def _following(self, deployment_id: str) -> Iterator[_Followed]:
        with self._lock:
            followed = self._followed.get(deployment_id)
            if followed is None:
                followed = self._followed[deployment_id] = _Followed(self._store, deployment_id)
            followed.waiters += 1
        try:
            yield followed
        finally:
            with self._lock:
                followed.waiters -= 1
                if not followed.waiters:
                    followed.stop()
                    del self._followed[deployment_id]

    def _wake(self, deployment: S.Deployment) -> bool:
        """Asks for the deployment's replica; False if another (a request, the autoscaler, its
        owner) moved it first."""
        if not deployment.HasField("autoscaling"):
            raise FailedPrecondition(f"deployment {deployment.id} has no replica and no autoscaling to start one")
        replicas = max(deployment.autoscaling.min_replicas, 1)
        with suppress(MlaasError):
            self._updates.rescale(
                deployment.id, replicas, f"activated from zero to {replicas} replica(s) by a request", autoscaler=True
            )
            return True
        return False
