from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from inference_svc.batcher import BatchPolicy
from inference_svc.data_refs import DataRefPolicy
from inference_svc.limits import TenantShare
from mlaas.cpu import cpu_limit
from mlaas.settings import ServerSettings, data_dir, env_bool, env_int


def _paths(raw: str | None) -> tuple[Path, ...]:
    return tuple(Path(p) for p in (raw or "").split(":") if p)


def _names(raw: str | None) -> tuple[str, ...]:
    return tuple(n.strip() for n in (raw or "").split(",") if n.strip())


@dataclass(frozen=True)
class RuntimeSettings:
    server: ServerSettings
    # Registry references (NAME, NAME:VERSION, NAME@ALIAS) to load at start.
    models: tuple[str, ...] = ()
    # Artifacts to load at start without a registry: (name, file:// or s3:// URI).
    model_uris: tuple[tuple[str, str], ...] = ()
    registry_address: str | None = None
    registry_token: str | None = None
    workers: int = 1
    # The Open Inference Protocol over HTTP/REST (rest.py): -1 off, 0 picks a free port.
    http_port: int = -1
    # The JSON part of one REST request (its Python objects take ~10x its size while it is read);
    # larger tensors go as binary data.
    max_json_bytes: int = 16 * 2**20
    intra_op_threads: int = 1
    # ONNX Runtime threads of a call predicted over 2 ms (batcher.WIDE_CALL_NS); 1: none wider.
    wide_call_threads: int = 1
    batch: BatchPolicy = field(default_factory=BatchPolicy)
    # Under auth, what one tenant may have in flight on a worker (inference_svc/limits.py).
    tenant_share: TenantShare = field(default_factory=TenantShare)
    data_refs: DataRefPolicy = field(default_factory=DataRefPolicy)
    cache_dir: Path = field(default_factory=lambda: Path("~/.mlaas/runtime-cache").expanduser())
    feedback_capacity: int = 10000
    # BYTES elements one request may carry (each becomes a Python object when decoded).
    max_bytes_elements: int = 1 << 20
    # Where inference records go (the Monitor), and the deployment they belong to.
    monitor_address: str | None = None
    deployment_id: str = ""
    # Asked who may use a deployment's runtime (inference_svc/access.py).
    scheduler_address: str | None = None
    # Where RepositoryModelLoad may load `parameters.uri` from, on a standalone runtime only.
    model_roots: tuple[Path, ...] = ()
    model_buckets: tuple[str, ...] = ()
    # STRICT deployments send window summaries, never raw inputs ("records" or "summaries").
    feedback_mode: str = "records"
    # Private loopback ports of every worker (index = worker), for repository broadcasts.
    control_ports: tuple[int, ...] = ()
    worker_index: int = 0

    @property
    def managed(self) -> bool:
        """The runtime serves a deployment of the mesh (not a standalone operator's runtime)."""
        return bool(self.deployment_id)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RuntimeSettings:
        max_queue_rows = env_int(env, "MLAAS_MAX_QUEUE_ROWS", BatchPolicy.max_queue_rows)
        return cls(
            server=ServerSettings.from_env(env, "inference", 0),
            # The model reference of a container started without arguments.
            models=tuple(filter(None, [env.get("MLAAS_MODEL")])),
            registry_address=env.get("MLAAS_REGISTRY_ADDR") or None,
            registry_token=env.get("MLAAS_TOKEN") or None,
            workers=env_int(env, "MLAAS_INFERENCE_WORKERS", cpu_limit()),
            http_port=env_int(env, "MLAAS_INFERENCE_HTTP_PORT", cls.http_port),
            max_json_bytes=env_int(env, "MLAAS_MAX_JSON_BYTES", cls.max_json_bytes),
            intra_op_threads=env_int(env, "MLAAS_INFERENCE_INTRA_OP_THREADS", 1),
            wide_call_threads=env_int(env, "MLAAS_INFERENCE_WIDE_CALL_THREADS", cpu_limit()),
            batch=BatchPolicy(
                max_batch_size=env_int(env, "MLAAS_MAX_BATCH_SIZE", 256),
                max_queue_delay_us=env_int(env, "MLAAS_MAX_QUEUE_DELAY_US", 0),
                max_queue_rows=max_queue_rows,
                inline_compute_us=env_int(env, "MLAAS_INLINE_COMPUTE_US", 100),
            ),
            tenant_share=TenantShare(
                max_requests=env_int(env, "MLAAS_MAX_INFLIGHT_PER_TENANT", TenantShare.max_requests),
                # Half the queue, as TenantShare's default, of the queue configured here.
                max_rows=env_int(env, "MLAAS_MAX_INFLIGHT_ROWS_PER_TENANT", max_queue_rows // 2),
            ),
            data_refs=DataRefPolicy(
                file_roots=_paths(env.get("MLAAS_DATA_URI_ROOTS")),
                https_hosts=_names(env.get("MLAAS_DATA_URI_HOSTS")),
                s3_buckets=_names(env.get("MLAAS_DATA_URI_BUCKETS")),
                max_bytes=env_int(env, "MLAAS_DATA_URI_MAX_BYTES", 256 * 2**20),
                s3_endpoint_url=env.get("MLAAS_S3_ENDPOINT_URL") or None,
                ca_file=env.get("MLAAS_DATA_URI_CA_FILE") or None,
                allow_private_addresses=env_bool(env, "MLAAS_DATA_URI_ALLOW_PRIVATE", False),
            ),
            cache_dir=data_dir(env) / "runtime-cache",
            feedback_capacity=env_int(env, "MLAAS_FEEDBACK_CAPACITY", 10000),
            max_bytes_elements=env_int(env, "MLAAS_MAX_BYTES_ELEMENTS", cls.max_bytes_elements),
            monitor_address=env.get("MLAAS_MONITOR_ADDR") or None,
            deployment_id=env.get("MLAAS_DEPLOYMENT_ID", ""),
            scheduler_address=env.get("MLAAS_SCHEDULER_ADDR") or None,
            model_roots=_paths(env.get("MLAAS_MODEL_ROOTS")),
            model_buckets=_names(env.get("MLAAS_MODEL_BUCKETS")),
            feedback_mode=env.get("MLAAS_FEEDBACK_MODE") or "records",
        )
