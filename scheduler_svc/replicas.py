"""Starting, checking and removing a deployment's replicas through its backend: shared by the
placement workers, rollouts and the reconcile loop.

A replica is recorded in the deployment before its process starts, and its endpoint and handle
right after, so whoever takes over after a crash can always find what was started.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Collection, Iterable

from mlaas.errors import Aborted
from mlaas.refs import format_ref
from mlaas.services.auth import CREDENTIAL_SECONDS, RUNTIME, MeshKey
from mlaas.services.net import wait_healthy
from mlaas.v1 import scheduler_pb2, types_pb2
from scheduler_svc.backends import Backend, ReplicaSpec, ReplicaStatus, RollingBackend
from scheduler_svc.store import DeploymentStore


def new_replica(deployment: scheduler_pb2.Deployment, node: str) -> scheduler_pb2.Replica:
    """A replica record of the deployment's (target) version on `node`, not started yet."""
    return scheduler_pb2.Replica(
        id=f"{deployment.id}-{uuid.uuid4().hex[:6]}", node=node, model_version=deployment.model.version
    )


def spec_for(
    deployment: scheduler_pb2.Deployment,
    replica: scheduler_pb2.Replica,
    ports: tuple[int, int, int] = (0, 0, 0),
    version: int = 0,
) -> ReplicaSpec:
    """The replica as the backend runs it: of its own model version, or of `version` if given;
    on the (gRPC, REST, bulk) `ports` if given."""
    model = types_pb2.ModelRef(name=deployment.model.name, version=version or replica.model_version)
    res = deployment.resources
    strict = deployment.mode == scheduler_pb2.PLACEMENT_MODE_STRICT
    return ReplicaSpec(
        replica.id, deployment.id, replica.node, format_ref(model), res.cpu_millicores, res.memory_bytes,
        port=ports[0], http_port=ports[1], bulk_port=ports[2], strict=strict,
    )  # fmt: skip


def as_status(replica: scheduler_pb2.Replica) -> ReplicaStatus:
    return ReplicaStatus(
        replica.id, replica.endpoint, True, handle=replica.handle,
        http_endpoint=replica.http_endpoint, bulk_endpoint=replica.bulk_endpoint,
    )  # fmt: skip


def record_started(replica: scheduler_pb2.Replica, started: ReplicaStatus) -> None:
    """Where a replica the backend (re)started serves, and its handle (a new process runs no trial)."""
    replica.endpoint, replica.handle = started.endpoint, started.handle
    replica.trial_version = 0
    replica.http_endpoint, replica.bulk_endpoint = started.http_endpoint, started.bulk_endpoint


def require_replicas(deployment: scheduler_pb2.Deployment, replica_ids: Collection[str]) -> None:
    """Raises Aborted unless the deployment still has the replicas `replica_ids`: a worker that
    was slow enough for another to take its request over must not record its own replicas over
    the other's, or call the other's ready."""
    if not set(replica_ids) <= {r.id for r in deployment.replica_status}:
        raise Aborted(f"deployment {deployment.id} has other replicas now (taken over)")


def publish_endpoints(deployment: scheduler_pb2.Deployment) -> None:
    """The deployment's endpoints (gRPC, REST and bulk): those of its replicas that take traffic."""
    serving = [r for r in deployment.replica_status if r.ready]
    deployment.ClearField("endpoints")
    deployment.endpoints.extend(r.endpoint for r in serving)
    deployment.ClearField("http_endpoints")
    deployment.http_endpoints.extend(r.http_endpoint for r in serving if r.http_endpoint)
    deployment.ClearField("bulk_endpoints")
    deployment.bulk_endpoints.extend(r.bulk_endpoint for r in serving if r.bulk_endpoint)


def endpoint_port(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1]) if endpoint else 0


class Replicas:
    def __init__(
        self, store: DeploymentStore, backend: Backend, start_timeout_seconds: float, key: MeshKey | None = None,
        credential_seconds: float = CREDENTIAL_SECONDS,
    ):  # fmt: skip
        self._store = store
        self._backend = backend
        self._start_timeout = start_timeout_seconds
        self._key = key
        self._credential_seconds = credential_seconds

    def spec(
        self,
        deployment: scheduler_pb2.Deployment,
        replica: scheduler_pb2.Replica,
        ports: tuple[int, int, int] = (0, 0, 0),
        version: int = 0,
        challenger: int = 0,
    ) -> ReplicaSpec:
        """spec_for, with the replica's credential when the mesh runs with auth (during a trial,
        one that also names its `challenger` version)."""
        spec = spec_for(deployment, replica, ports, version)
        if self._key is None:
            return spec
        token = self._key.mint(RUNTIME, deployment.id, spec.model_ref, challenger, self._credential_seconds)
        return dataclasses.replace(spec, token=token)

    @property
    def backend(self) -> Backend:
        return self._backend

    def start(
        self,
        deployment: scheduler_pb2.Deployment,
        replica_ids: Collection[str],
        state: int | None = None,
        detail: str = "",
        only_from: Collection[int] = (),
    ) -> scheduler_pb2.Deployment:
        """Starts the recorded replicas `replica_ids` and records their endpoints and handles.
        If the deployment moved on meanwhile (Aborted), the processes are removed again."""
        wanted = [r for r in deployment.replica_status if r.id in replica_ids]
        started = {r.id: self._backend.create(self.spec(deployment, r)) for r in wanted}

        def record(d: scheduler_pb2.Deployment) -> None:
            require_replicas(d, started)
            for replica in d.replica_status:
                if replica.id in started:
                    record_started(replica, started[replica.id])

        try:
            return self._store.update(deployment.id, record, state, detail, only_from)
        except Aborted:
            for status in started.values():
                self._backend.delete(status)
            raise

    def wait_healthy(self, deployment: scheduler_pb2.Deployment, replica_ids: Collection[str]) -> str | None:
        """None once every replica in `replica_ids` serves; otherwise why not, with log lines."""
        replicas = [r for r in deployment.replica_status if r.id in replica_ids]
        try:
            for replica in replicas:
                wait_healthy(replica.endpoint, timeout=self._start_timeout)
        except TimeoutError as err:
            logs = " | ".join(self._backend.logs(as_status(r), lines=5) for r in replicas)[-800:]
            return f"{err}; logs: {logs}"
        return None

    def remove(self, replicas: Iterable[scheduler_pb2.Replica]) -> None:
        """Stops replicas (each drains within the backend's grace period)."""
        for replica in replicas:
            if replica.handle:
                self._backend.delete(as_status(replica))

    def roll(
        self,
        deployment: scheduler_pb2.Deployment,
        replicas: Collection[scheduler_pb2.Replica],
        version: int,
        poll_seconds: float = 0.5,
    ) -> str | None:
        """Moves running replicas to `version` in place, through a backend that rolls them itself.
        None once each serves it; otherwise why not, after rolling every one back to its own
        version (the platform keeps the old pod serving until a new one is ready)."""
        backend: RollingBackend = self._backend  # type: ignore[assignment]
        for replica in replicas:
            backend.roll(as_status(replica), self.spec(deployment, replica, version=version))
        deadline = time.monotonic() + self._start_timeout
        pending = list(replicas)
        while pending:
            states = {r.id: backend.roll_state(as_status(r)) for r in pending}
            problem = next((s.problem for s in states.values() if s.problem), "")
            if not problem and time.monotonic() > deadline:
                problem = f"not serving version {version} after {self._start_timeout:.0f}s"
            if problem:
                for replica in replicas:
                    backend.roll(as_status(replica), self.spec(deployment, replica))
                return problem
            pending = [r for r in pending if not states[r.id].done]
            if pending:
                time.sleep(poll_seconds)
        return None
