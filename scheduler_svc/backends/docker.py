"""Replicas and training jobs as containers of the uniform image, through the `docker` SDK.

Each node may name its own engine (`docker=URL` in MLAAS_NODES), so a STRICT deployment runs on
the engine of the node it names, and nowhere else; nodes without one use this machine's. The
handle is `NODE/CONTAINER-ID`, so the backend finds the engine again after a restart.

Each container gets the replica's CPU (nano-CPUs) and memory as hard limits, labels for the
deployment, model, version and node, a health check (`python -m mlaas.services.healthcheck`), and the
host's network: the runtime binds the free port the backend chose, and reaches the registry and
the Monitor on the addresses the scheduler was given, as a local process would. A training job
mounts its own directory of the jobs directory at the same path (a warm job container, started
before its job is known, the whole jobs directory) and runs as the scheduler's own user, so that
the files it writes belong to it. When the mesh runs TLS, its certificate files (MLAAS_TLS_*) are
mounted read-only at the same paths (they must exist there on every engine's host), and the
container runs as the scheduler's user, the only one that may read the keys (0600).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from mlaas.services.net import free_port
from mlaas.tls import ALL_ENV
from scheduler_svc.backends import JobSpec, ReplicaSpec, ReplicaStatus, credential, docker_warm
from scheduler_svc.backends.k8s_manifests import object_name
from scheduler_svc.backends.launch import job_args, runtime_args, runtime_env

RUNNING = ("created", "running", "restarting")
SECOND_NS = 1_000_000_000
# Where a runtime that runs as the scheduler's user (not the image's) keeps its model cache.
TLS_RUNTIME_DATA_DIR = "/tmp/mlaas"


def tls_mounts(env: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """Docker volumes for the TLS files `env` names: each read-only at its own path."""
    files = sorted({env[name] for name in ALL_ENV if env.get(name)})
    return {path: {"bind": path, "mode": "ro"} for path in files}


def runtime_options(env: Mapping[str, str]) -> dict:
    """What `containers.run` needs beyond the image's defaults for the mesh's TLS files, if any."""
    volumes = tls_mounts(env)
    if not volumes:
        return {}
    return {
        "volumes": volumes,
        "user": f"{os.getuid()}:{os.getgid()}",
        "environment": {**env, "MLAAS_DATA_DIR": TLS_RUNTIME_DATA_DIR},
    }


def _labels(kind: str, owner: str, model_ref: str, node: str, mesh: str) -> dict[str, str]:
    name, _, version = model_ref.partition(":")
    return {
        "mlaas.io/mesh": mesh,
        "mlaas.io/component": kind,
        "mlaas.io/deployment": owner,
        "mlaas.io/model": name,
        "mlaas.io/version": version,
        "mlaas.io/node": node,
    }


class DockerBackend:
    name = "docker"

    def __init__(
        self,
        image: str,
        env: Mapping[str, str],
        jobs_dir: str,
        engines: Mapping[str, str] | None = None,
        mesh: str = "mlaas",
        warm_jobs: bool = True,
    ):
        """`engines`: node -> Docker engine URL; `mesh` labels every container, so that several
        meshes can share one engine; `warm_jobs`: a warm job container per node (docker_warm.py)."""
        import docker

        self._default = docker.from_env()
        self._engines = {node: docker.DockerClient(base_url=url) for node, url in (engines or {}).items()}
        self._mesh = mesh
        self._image = image
        self._env = dict(env)  # the mesh's addresses (container_env); credentials come with each spec
        self._jobs_dir = jobs_dir
        self._warm = None
        if warm_jobs:
            self._warm = docker_warm.WarmJobContainers(self._start_warm)
            for engine in {self._default, *self._engines.values()}:  # an earlier scheduler's, killed
                docker_warm.remove_waiting(engine, mesh)

    def create(self, spec: ReplicaSpec) -> ReplicaStatus:
        port, http_port, bulk_port = (p or free_port() for p in (spec.port, spec.http_port, spec.bulk_port))
        environment = {**self._env, **runtime_env(spec)}
        options = {"environment": environment, **runtime_options(environment)}
        container = self._engine(spec.node).containers.run(
            self._image,
            ["inference", *runtime_args(spec, port, http_port, bulk_port)],
            name=object_name(spec.replica_id),
            detach=True,
            network_mode="host",
            labels=_labels("runtime", spec.deployment_id, spec.model_ref, spec.node, self._mesh),
            nano_cpus=max(spec.cpu_millicores, 1) * 1_000_000,
            mem_limit=max(spec.memory_bytes, 64 << 20),
            healthcheck={
                "test": ["CMD", "python", "-m", "mlaas.services.healthcheck", f"127.0.0.1:{port}"],
                "interval": 5 * SECOND_NS, "timeout": 3 * SECOND_NS, "retries": 3, "start_period": 10 * SECOND_NS,
            },
            **options,
        )  # fmt: skip
        if self._warm is not None:  # warm before this replica's first retraining is due
            self._warm.ensure(spec.node)
        return ReplicaStatus(
            spec.replica_id, f"127.0.0.1:{port}", True, handle=f"{spec.node}/{container.id}",
            http_endpoint=f"127.0.0.1:{http_port}", bulk_endpoint=f"127.0.0.1:{bulk_port}",
        )  # fmt: skip

    def start_job(self, spec: JobSpec) -> ReplicaStatus:
        """The job in a warm container of its node if one is ready, else in a new one."""
        argv = job_args(spec, self._env.get("MLAAS_REGISTRY_ADDR", ""))
        environment = {**self._env, **credential(spec.token)}
        memory = max(spec.memory_bytes, 64 << 20)
        container = None
        if self._warm is not None:
            name = object_name(spec.job_id)
            container = self._warm.run(spec.node, name, argv, environment, spec.cpu_millicores, memory)
        if container is None:
            container = self._job_container(
                spec.node, ["train", *argv], object_name(spec.job_id), environment,
                _labels("training", spec.job_id, spec.model_ref, spec.node, self._mesh), spec.cpu_millicores, memory,
                mounted=os.path.dirname(spec.output_path),
            )  # fmt: skip
        return ReplicaStatus(spec.job_id, "", True, handle=f"{spec.node}/{container.id}")

    def _start_warm(self, node: str, name: str):
        """A warm job container on the node (docker_warm.py), waiting for its job: a training
        container whose job, model and name come when it is taken (labels stay as they were)."""
        labels = {**_labels("training", "", "", node, self._mesh), **docker_warm.WARM_LABELS}
        cpu, memory = docker_warm.WARM_CPU_MILLICORES, docker_warm.WARM_MEMORY_BYTES
        command = ["train-warm", "--idle-seconds", str(docker_warm.IDLE_SECONDS)]
        return self._job_container(node, command, name, self._env, labels, cpu, memory, self._jobs_dir, stdin_open=True)

    def _job_container(
        self, node: str, command: list[str], name: str, environment: Mapping[str, str], labels: Mapping[str, str],
        cpu_millicores: int, memory_bytes: int, mounted: str, **options,
    ):  # fmt: skip
        """A training job's container: `mounted` at its own path (a cold job's own directory; the
        whole jobs directory for a warm one, whose job is not known yet), the scheduler's user,
        the host's network, hard CPU (a quota, which a warm container's `docker update` can
        change) and memory limits."""
        return self._engine(node).containers.run(
            self._image, command, name=name, detach=True, network_mode="host", environment=dict(environment),
            labels=dict(labels), cpu_period=docker_warm.CPU_PERIOD,
            cpu_quota=docker_warm.cpu_quota(cpu_millicores), mem_limit=memory_bytes,
            volumes={mounted: {"bind": mounted, "mode": "rw"}, **tls_mounts(self._env)},
            user=f"{os.getuid()}:{os.getgid()}", **options,
        )  # fmt: skip

    def close(self) -> None:
        if self._warm is not None:
            self._warm.close()
        for engine in {self._default, *self._engines.values()}:
            engine.close()

    def _engine(self, node: str):
        return self._engines.get(node, self._default)

    def _container(self, replica: ReplicaStatus):
        import docker

        node, _, container_id = replica.handle.rpartition("/")
        try:
            container = self._engine(node).containers.get(container_id)
        except docker.errors.NotFound:
            return None
        return container

    def status(self, replica: ReplicaStatus) -> ReplicaStatus:
        container = self._container(replica)
        if container is None:
            return ReplicaStatus(replica.replica_id, replica.endpoint, False, None, replica.handle)
        if container.status in RUNNING:
            return ReplicaStatus(replica.replica_id, replica.endpoint, True, None, replica.handle)
        code = container.attrs["State"]["ExitCode"]
        return ReplicaStatus(replica.replica_id, replica.endpoint, False, code, replica.handle)

    def logs(self, replica: ReplicaStatus, lines: int = 100) -> str:
        container = self._container(replica)
        return container.logs(tail=lines).decode(errors="replace") if container is not None else ""

    def node_store(self, deployment_id: str) -> str | None:
        """None: a replica's node store is in its container, out of a job's reach."""
        return None

    def forget(self, deployment_id: str) -> None:
        """Nothing: a replica's node store is in its container, removed with it."""

    def delete(self, replica: ReplicaStatus, grace_seconds: float = 10.0) -> None:
        """SIGTERM (the runtime drains), SIGKILL after the grace period, then the container goes."""
        container = self._container(replica)
        if container is None:
            return
        if container.status in RUNNING:
            container.stop(timeout=int(grace_seconds))
        container.remove(force=True)
