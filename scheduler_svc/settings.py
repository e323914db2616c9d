from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mlaas.cpu import cpu_limit
from mlaas.quantities import parse_cpu, parse_memory
from mlaas.settings import ServerSettings, data_dir, env_float, env_int
from scheduler_svc.placement import Node

DEFAULT_PORT = 50052


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


@dataclass(frozen=True)
class SchedulerSettings:
    server: ServerSettings
    redis_url: str
    registry_address: str
    data_dir: Path
    nodes: list[Node] = field(default_factory=this_machine)
    placement_workers: int = 2
    # A request that fits nowhere (or not on its STRICT node) waits this long, then FAILS.
    placement_timeout_seconds: float = 300.0
    # How long a replica may take to report healthy.
    start_timeout_seconds: float = 120.0
    # A claimed request whose worker went quiet this long is taken over by another worker.
    claim_idle_ms: int = 30_000
    # A deployment with no lease stays warm (CACHED) this long before it is destroyed.
    cache_ttl_seconds: float = 600.0
    # How often the reconcile loop checks replicas, and its first restart delay (it doubles).
    reconcile_interval_seconds: float = 1.0
    restart_backoff_seconds: float = 1.0
    # A replica that ran this long since its last start is restarted after the first delay again.
    restart_backoff_reset_seconds: float = 600.0
    # Where training jobs read their data and write their models (shared with the Monitor).
    jobs_dir: Path | None = None
    # "local" (child processes on the named MLAAS_NODES), "docker" (containers of
    # MLAAS_RUNTIME_IMAGE on this machine's engine, on the named MLAAS_NODES) or "kubernetes" (the
    # cluster's nodes, in-cluster config or ~/.kube/config, MLAAS_RUNTIME_IMAGE, MLAAS_K8S_NAMESPACE).
    backend: str = "local"
    k8s_namespace: str = "mlaas"
    runtime_image: str = "mlaas:latest"
    # The Secret (tls.crt, tls.key, ca.crt) runtimes and jobs mount when the scheduler serves TLS.
    k8s_tls_secret: str = "mlaas-tls"
    # How long DESTROYED and FAILED deployments (records, events) and idempotency keys are kept.
    retention_seconds: float = 86_400.0
    # A training job still running this long after it started is stopped and FAILED.
    training_deadline_seconds: float = 3_600.0
    # Under auth, what one tenant may own at once: deployments not ended, and of those QUEUED.
    max_deployments_per_tenant: int = 100
    max_queued_per_tenant: int = 20

    @property
    def training_dir(self) -> Path:
        return self.jobs_dir or self.data_dir / "jobs"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SchedulerSettings:
        nodes = env.get("MLAAS_NODES")
        return cls(
            server=ServerSettings.from_env(env, "scheduler", DEFAULT_PORT),
            redis_url=env.get("MLAAS_REDIS_URL") or "redis://127.0.0.1:6379/0",
            registry_address=env.get("MLAAS_REGISTRY_ADDR") or "127.0.0.1:50051",
            data_dir=data_dir(env),
            nodes=parse_nodes(nodes) if nodes else this_machine(),
            placement_workers=env_int(env, "MLAAS_PLACEMENT_WORKERS", 2),
            placement_timeout_seconds=env_float(env, "MLAAS_PLACEMENT_TIMEOUT_SECONDS", 300.0),
            start_timeout_seconds=env_float(env, "MLAAS_START_TIMEOUT_SECONDS", 120.0),
            claim_idle_ms=env_int(env, "MLAAS_CLAIM_IDLE_MS", 30_000),
            cache_ttl_seconds=env_float(env, "MLAAS_CACHE_TTL_SECONDS", 600.0),
            reconcile_interval_seconds=env_float(env, "MLAAS_RECONCILE_INTERVAL_SECONDS", 1.0),
            restart_backoff_seconds=env_float(env, "MLAAS_RESTART_BACKOFF_SECONDS", 1.0),
            restart_backoff_reset_seconds=env_float(env, "MLAAS_RESTART_BACKOFF_RESET_SECONDS", 600.0),
            jobs_dir=Path(env["MLAAS_JOBS_DIR"]) if env.get("MLAAS_JOBS_DIR") else None,
            backend=env.get("MLAAS_BACKEND") or "local",
            k8s_namespace=env.get("MLAAS_K8S_NAMESPACE") or "mlaas",
            runtime_image=env.get("MLAAS_RUNTIME_IMAGE") or "mlaas:latest",
            k8s_tls_secret=env.get("MLAAS_K8S_TLS_SECRET") or "mlaas-tls",
            retention_seconds=env_float(env, "MLAAS_RETENTION_SECONDS", cls.retention_seconds),
            training_deadline_seconds=env_float(env, "MLAAS_TRAINING_DEADLINE_SECONDS", cls.training_deadline_seconds),
            max_deployments_per_tenant=env_int(env, "MLAAS_MAX_DEPLOYMENTS_PER_TENANT", cls.max_deployments_per_tenant),
            max_queued_per_tenant=env_int(env, "MLAAS_MAX_QUEUED_PER_TENANT", cls.max_queued_per_tenant),
        )
