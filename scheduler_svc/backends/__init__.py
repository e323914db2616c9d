"""Runtime backends: where replicas and training jobs run. One interface (create, start_job,
status, logs, delete); the local backend runs child processes now, Docker and Kubernetes come
with their own issue."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class ReplicaSpec:
    replica_id: str
    deployment_id: str
    node: str
    # A registry reference NAME:VERSION, resolved when the deployment was accepted.
    model_ref: str
    cpu_millicores: int
    memory_bytes: int
    # 0: any free port; a restarted replica asks for its old one, so its endpoint stays the same.
    port: int = 0
    # The same for its HTTP/REST port and its bulk port (inference_svc/server.py).
    http_port: int = 0
    bulk_port: int = 0
    # STRICT: the replica's raw inputs must not leave its node (it sends only summaries).
    strict: bool = False
    # The replica's own credential (MLAAS_TOKEN), minted for this deployment and model version.
    token: str = ""


@dataclass(frozen=True)
class JobSpec:
    """A training job: fit `model_ref`'s recipe on `input_path` (.npz), write `output_path`. A
    round on a STRICT deployment's node instead reads the plan at `input_path` (a NodeRound as
    JSON) and the node's data at `node_store`, and writes its RoundResult at `result_path`."""

    job_id: str
    node: str
    model_ref: str
    input_path: str
    output_path: str
    cpu_millicores: int
    memory_bytes: int
    # The job's own credential (MLAAS_TOKEN): it reads its model's recipe and nothing else.
    token: str = ""
    node_store: str = ""
    result_path: str = ""


@dataclass(frozen=True)
class ReplicaStatus:
    replica_id: str
    endpoint: str
    running: bool
    exit_code: int | None = None
    # Backend-specific handle (a pid, a container id), kept in the deployment record.
    handle: str = ""
    # host:port of its HTTP/REST endpoint and of its bulk endpoint (replicas only).
    http_endpoint: str = ""
    bulk_endpoint: str = ""
    # A job's memory (its record's): a backend with no hard limit watches it, also for a job an
    # earlier scheduler process started.
    memory_bytes: int = 0


@dataclass(frozen=True)
class RollState:
    """How an in-place roll is going: done, failed (`problem`), or neither yet."""

    done: bool = False
    problem: str = ""


class Backend(Protocol):
    name: str

    def create(self, spec: ReplicaSpec) -> ReplicaStatus:
        """Starts the replica and returns at once; readiness is checked with gRPC health."""

    def start_job(self, spec: JobSpec) -> ReplicaStatus:
        """Starts a training job (status, logs and delete work on it as on a replica)."""

    def status(self, replica: ReplicaStatus) -> ReplicaStatus: ...

    def logs(self, replica: ReplicaStatus, lines: int = 100) -> str: ...

    def delete(self, replica: ReplicaStatus, grace_seconds: float = 10.0) -> None: ...

    def node_store(self, deployment_id: str) -> str | None:
        """Where a job on a STRICT deployment's node finds the data its runtimes keep there; None
        where a job cannot reach it (it lives in the replica's container or pod)."""

    def forget(self, deployment_id: str) -> None:
        """Removes what a destroyed deployment left on its nodes beside its replicas (a STRICT
        deployment's store of predictions and labels, inference_svc/node_labels.py)."""

    def close(self) -> None:
        """Releases what the backend holds (connections, watches); replicas keep running."""


class RollingBackend(Backend, Protocol):
    """A backend whose platform replaces a replica's model itself (Kubernetes: the Deployment's
    rolling update), keeping its endpoint; rollouts use it instead of a surge of new replicas."""

    def roll(self, replica: ReplicaStatus, spec: ReplicaSpec) -> None:
        """Starts replacing the replica's model by `spec.model_ref`; returns at once."""

    def roll_state(self, replica: ReplicaStatus) -> RollState: ...


def credential(token: str) -> dict[str, str]:
    """The environment that hands a replica or job its minted credential (none in open mode)."""
    return {"MLAAS_TOKEN": token} if token else {}


def rolls_in_place(backend: Backend) -> bool:
    return callable(getattr(backend, "roll", None))


def heals_itself(backend: Backend) -> bool:
    """True when the platform restarts a replica that stops answering (Kubernetes' liveness
    probe): the scheduler then only takes it out of the endpoints until it serves again."""
    return bool(getattr(backend, "restarts_replicas", False))
