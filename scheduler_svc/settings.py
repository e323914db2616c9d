from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mlaas import addresses
from mlaas.quantities import parse_cpu, parse_memory
from mlaas.services.cpu import cpu_limit
from mlaas.services.settings import ServerSettings, data_dir, path_setting, read_env, setting
from scheduler_svc.placement import Node

DEFAULT_PORT = addresses.SCHEDULER_PORT


DOCKER_HOST_LABEL = "mlaas.io/docker-host"


def parse_nodes(text: str) -> list[Node]:
    """`name:cpu=2,memory=4Gi,gpus=0;other:cpu=500m,memory=1Gi,docker=tcp://other:2375` -> nodes.
    `docker` names the node's Docker engine (for the Docker backend; default: this machine's)."""
    nodes = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        name, _, spec = part.partition(":")
        values = dict(item.split("=", 1) for item in spec.split(",") if "=" in item)
        unknown = set(values) - {"cpu", "memory", "gpus", "docker"}
        if not name or unknown or not {"cpu", "memory"} <= set(values):
            raise ValueError(f"MLAAS_NODES entry {part!r}: expected NAME:cpu=N,memory=SIZE[,gpus=N][,docker=URL]")
        resources = (parse_cpu(values["cpu"]), parse_memory(values["memory"]), int(values.get("gpus", 0)))
        labels = {DOCKER_HOST_LABEL: values["docker"]} if "docker" in values else {}
        nodes.append(Node(name, resources, labels=labels))
    return nodes


def this_machine() -> list[Node]:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return [Node("local", (cpu_limit() * 1000, memory, 0))]


BACKENDS = ("local", "docker", "kubernetes")


@dataclass(frozen=True)
class SchedulerSettings:
    """Each tunable with its environment variable and default, declared once (read_env)."""

    server: ServerSettings
    data_dir: Path
    redis_url: str = setting("MLAAS_REDIS_URL", "redis://127.0.0.1:6379/0")
    registry_address: str = setting("MLAAS_REGISTRY_ADDR", addresses.REGISTRY)
    # The scheduler's own token (its role's), for the runtimes' repositories (hot version swaps).
    token: str | None = setting("MLAAS_TOKEN", None, parse=str)
    nodes: list[Node] = field(default_factory=this_machine)  # MLAAS_NODES, parse_nodes
    placement_workers: int = setting("MLAAS_PLACEMENT_WORKERS", 2)
    # A request that fits nowhere (or not on its STRICT node) waits this long, then FAILS.
    placement_timeout_seconds: float = setting("MLAAS_PLACEMENT_TIMEOUT_SECONDS", 300.0)
    # How long a replica may take to report healthy.
    start_timeout_seconds: float = setting("MLAAS_START_TIMEOUT_SECONDS", 120.0)
    # A claimed request whose worker went quiet this long is taken over by another worker.
    claim_idle_ms: int = setting("MLAAS_CLAIM_IDLE_MS", 30_000)
    # A deployment with no lease stays warm (CACHED) this long before it is destroyed.
    cache_ttl_seconds: float = setting("MLAAS_CACHE_TTL_SECONDS", 600.0)
    # How often the reconcile loop checks replicas, and its first restart delay (it doubles).
    reconcile_interval_seconds: float = setting("MLAAS_RECONCILE_INTERVAL_SECONDS", 1.0)
    restart_backoff_seconds: float = setting("MLAAS_RESTART_BACKOFF_SECONDS", 1.0)
    # A replica that ran this long since its last start is restarted after the first delay again.
    restart_backoff_reset_seconds: float = setting("MLAAS_RESTART_BACKOFF_RESET_SECONDS", 600.0)
    # Where training jobs read their data and write their models (the scheduler's and its jobs' only).
    jobs_dir: Path | None = setting("MLAAS_JOBS_DIR", None, parse=path_setting)
    # "local" (child processes on the named MLAAS_NODES), "docker" (containers of
    # MLAAS_RUNTIME_IMAGE on this machine's engine, on the named MLAAS_NODES) or "kubernetes" (the
    # cluster's nodes, in-cluster config or ~/.kube/config, MLAAS_RUNTIME_IMAGE, MLAAS_K8S_NAMESPACE).
    backend: str = setting("MLAAS_BACKEND", "local", choices=BACKENDS)
    # Training jobs start warm: the local backend forks them from a warm trainer per node
    # (backends/local.py); the Docker backend runs each in a warm container of its node
    # (backends/docker_warm.py).
    warm_trainers: bool = setting("MLAAS_WARM_TRAINERS", True)
    # The local backend forks replicas from a warm runtime (backends/local.py): a replica serves in
    # a fraction of a second, not after three interpreters' imports.
    warm_runtimes: bool = setting("MLAAS_WARM_RUNTIMES", True)
    k8s_namespace: str = setting("MLAAS_K8S_NAMESPACE", "mlaas")
    runtime_image: str = setting("MLAAS_RUNTIME_IMAGE", "mlaas:latest")
    # The Secret (tls.crt, tls.key, ca.crt) runtimes and jobs mount when the scheduler serves TLS.
    k8s_tls_secret: str = setting("MLAAS_K8S_TLS_SECRET", "mlaas-tls")
    # How long DESTROYED and FAILED deployments (records, events) and idempotency keys are kept.
    retention_seconds: float = setting("MLAAS_RETENTION_SECONDS", 86_400.0)
    # How long a runtime's credential lives; the scheduler renews it every third of that while its
    # deployment is READY or CACHED (a job's lives as long as the job may).
    credential_seconds: float = setting("MLAAS_CREDENTIAL_SECONDS", 600.0)
    # The largest input file a training job takes (it is copied into the job's own directory).
    max_input_bytes: int = setting("MLAAS_MAX_INPUT_BYTES", 1 << 30)
    # A training job still running this long after it started is stopped and FAILED.
    training_deadline_seconds: float = setting("MLAAS_TRAINING_DEADLINE_SECONDS", 3_600.0)
    # Under auth, what one tenant may own at once: deployments not ended, and of those QUEUED.
    max_deployments_per_tenant: int = setting("MLAAS_MAX_DEPLOYMENTS_PER_TENANT", 100)
    max_queued_per_tenant: int = setting("MLAAS_MAX_QUEUED_PER_TENANT", 20)
    # Under auth, the most replicas the autoscaler gives one tenant's deployments in all.
    max_replicas_per_tenant: int = setting("MLAAS_MAX_REPLICAS_PER_TENANT", 32)
    # How often the autoscaler reads the replicas' load and decides (autoscaler.py).
    autoscale_interval_seconds: float = setting("MLAAS_AUTOSCALE_INTERVAL_SECONDS", 1.0)
    # The activator (activator.py, activator_http.py): its gRPC and HTTP ports (on the scheduler's
    # host; -1: none), and the calls it holds or forwards at once, in all and of one tenant.
    activator_port: int = setting("MLAAS_ACTIVATOR_PORT", addresses.ACTIVATOR_PORT)
    activator_http_port: int = setting("MLAAS_ACTIVATOR_HTTP_PORT", addresses.ACTIVATOR_HTTP_PORT)
    activator_calls: int = setting("MLAAS_ACTIVATOR_CALLS", 128)
    activator_calls_per_caller: int = setting("MLAAS_ACTIVATOR_CALLS_PER_CALLER", 32)

    @property
    def training_dir(self) -> Path:
        return self.jobs_dir or self.data_dir / "jobs"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SchedulerSettings:
        nodes = env.get("MLAAS_NODES")
        return read_env(
            cls, env, server=ServerSettings.from_env(env, "scheduler", DEFAULT_PORT), data_dir=data_dir(env),
            nodes=parse_nodes(nodes) if nodes else this_machine(),
        )  # fmt: skip
