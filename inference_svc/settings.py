from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mlaas.message_limits import BULK_THRESHOLD_BYTES, MAX_MESSAGE_BYTES
from mlaas.services.cpu import cpu_limit
from mlaas.services.settings import ServerSettings, data_dir, names_setting, paths_setting, read_env, setting


# The runtime's nested policies (batcher.py, limits.py, data_refs.py take them): here, so that
# the runtime's supervising process reads its settings without the data plane's imports.
@dataclass(frozen=True)
class BatchPolicy:
    max_batch_size: int = setting("MLAAS_MAX_BATCH_SIZE", 256)
    max_queue_delay_us: int = setting("MLAAS_MAX_QUEUE_DELAY_US", 0)
    max_queue_rows: int = setting("MLAAS_MAX_QUEUE_ROWS", 65536)
    # False for models whose leading dimension is fixed: each request then runs alone.
    batchable: bool = True
    # Calls predicted shorter than this run on the event loop (batcher.py's docstring).
    inline_compute_us: int = setting("MLAAS_INLINE_COMPUTE_US", 100)


@dataclass(frozen=True)
class TenantShare:
    max_requests: int = setting("MLAAS_MAX_INFLIGHT_PER_TENANT", 256)
    # Half the model's queue: one tenant can never fill it for the others (RuntimeSettings
    # halves the queue configured there).
    max_rows: int = setting("MLAAS_MAX_INFLIGHT_ROWS_PER_TENANT", BatchPolicy.max_queue_rows // 2)


@dataclass(frozen=True)
class DataRefPolicy:
    file_roots: tuple[Path, ...] = setting("MLAAS_DATA_URI_ROOTS", (), parse=paths_setting)
    https_hosts: tuple[str, ...] = setting("MLAAS_DATA_URI_HOSTS", (), parse=names_setting)
    s3_buckets: tuple[str, ...] = setting("MLAAS_DATA_URI_BUCKETS", (), parse=names_setting)
    max_bytes: int = setting("MLAAS_DATA_URI_MAX_BYTES", 256 * 2**20)
    s3_endpoint_url: str | None = setting("MLAAS_S3_ENDPOINT_URL", None, parse=str)
    # Extra CA bundle for https references (e.g. an internal CA).
    ca_file: str | None = setting("MLAAS_DATA_URI_CA_FILE", None, parse=str)
    timeout_seconds: float = 30.0
    # https references to loopback, private or link-local addresses (an internal data server).
    allow_private_addresses: bool = setting("MLAAS_DATA_URI_ALLOW_PRIVATE", False)
    roots_resolved: tuple[Path, ...] = field(init=False, default=())

    def __post_init__(self):
        object.__setattr__(self, "roots_resolved", tuple(p.resolve() for p in self.file_roots))


@dataclass(frozen=True)
class RuntimeSettings:
    """Each tunable with its environment variable and default, declared once (read_env; the
    nested policies' above)."""

    server: ServerSettings
    # Registry references (NAME, NAME:VERSION, NAME@ALIAS) to load at start; MLAAS_MODEL is the
    # model of a container started without arguments.
    models: tuple[str, ...] = setting("MLAAS_MODEL", (), parse=lambda raw: (raw,))
    # Artifacts to load at start without a registry: (name, file:// or s3:// URI).
    model_uris: tuple[tuple[str, str], ...] = ()
    registry_address: str | None = setting("MLAAS_REGISTRY_ADDR", None, parse=str)
    registry_token: str | None = setting("MLAAS_TOKEN", None, parse=str)
    workers: int = setting("MLAAS_INFERENCE_WORKERS", cpu_limit())
    intra_op_threads: int = setting("MLAAS_INFERENCE_INTRA_OP_THREADS", 1)
    # ONNX Runtime threads of a call predicted over 2 ms (batcher.WIDE_CALL_NS); 1: none wider.
    wide_call_threads: int = setting("MLAAS_INFERENCE_WIDE_CALL_THREADS", cpu_limit())
    # The Open Inference Protocol over HTTP/REST (rest.py): -1 off, 0 picks a free port.
    http_port: int = setting("MLAAS_INFERENCE_HTTP_PORT", -1)
    # Requests over bulk_threshold_bytes go to a worker of their own on this port, pinned to
    # bulk_cores CPUs (server.py): the other workers' ports refuse them, so no big request
    # holds the event loop or the cores of a small one. -1: no bulk worker; 0 picks a port.
    bulk_port: int = setting("MLAAS_INFERENCE_BULK_PORT", -1)
    bulk_threshold_bytes: int = setting("MLAAS_INFERENCE_BULK_THRESHOLD_BYTES", BULK_THRESHOLD_BYTES)
    # Calls the bulk worker holds at once (each may hold a 64 MiB message and its copies);
    # beyond, RESOURCE_EXHAUSTED as they start, before their message is read.
    bulk_concurrency: int = setting("MLAAS_INFERENCE_BULK_CONCURRENCY", 2)
    # A connection to the bulk port lives this long, then as long again for its calls to end:
    # an idle stream or a stalled upload holds one of those calls no longer.
    bulk_connection_seconds: float = setting("MLAAS_INFERENCE_BULK_CONNECTION_SECONDS", 60.0)
    # CPUs kept for the bulk worker; 0: it shares them all (the default with a single CPU).
    bulk_cores: int = setting("MLAAS_INFERENCE_BULK_CORES", 1 if cpu_limit() >= 2 else 0)
    # The JSON part of one REST request (its Python objects take ~10x its size while it is read);
    # larger tensors go as binary data.
    max_json_bytes: int = setting("MLAAS_MAX_JSON_BYTES", 16 * 2**20)
    # A REST connection sends each request's headers within this long, and its body within
    # the next: slow or idle clients hold neither connections nor memory.
    rest_header_seconds: float = setting("MLAAS_REST_HEADER_SECONDS", 10.0)
    rest_body_seconds: float = setting("MLAAS_REST_BODY_SECONDS", 60.0)
    # REST request bodies in flight on a worker (one tenant: half); beyond, 429 at once.
    rest_body_budget_bytes: int = setting("MLAAS_REST_BODY_BUDGET_BYTES", 256 * 2**20)
    batch: BatchPolicy = field(default_factory=BatchPolicy)
    # Under auth, what one tenant may have in flight on a worker (inference_svc/limits.py).
    tenant_share: TenantShare = field(default_factory=TenantShare)
    data_refs: DataRefPolicy = field(default_factory=DataRefPolicy)
    cache_dir: Path = field(default_factory=lambda: Path("~/.mlaas/runtime-cache").expanduser())
    feedback_capacity: int = setting("MLAAS_FEEDBACK_CAPACITY", 10000)
    feedback_budget_bytes: int = setting("MLAAS_FEEDBACK_BUDGET_BYTES", 64 * 2**20)
    # BYTES elements one request may carry (each becomes a Python object when decoded).
    max_bytes_elements: int = setting("MLAAS_MAX_BYTES_ELEMENTS", 1 << 20)
    # Where inference records go (the Monitor), and the deployment they belong to.
    monitor_address: str | None = setting("MLAAS_MONITOR_ADDR", None, parse=str)
    deployment_id: str = setting("MLAAS_DEPLOYMENT_ID", "")
    # Asked who may use a deployment's runtime (inference_svc/access.py).
    scheduler_address: str | None = setting("MLAAS_SCHEDULER_ADDR", None, parse=str)
    # Where RepositoryModelLoad may load `parameters.uri` from, on a standalone runtime only.
    model_roots: tuple[Path, ...] = setting("MLAAS_MODEL_ROOTS", (), parse=paths_setting)
    model_buckets: tuple[str, ...] = setting("MLAAS_MODEL_BUCKETS", (), parse=names_setting)
    # STRICT deployments send window summaries, never raw inputs; their predictions and labels
    # stay on the node, in node_dir (node_labels.py), up to node_keep_predictions of each.
    feedback_mode: str = setting("MLAAS_FEEDBACK_MODE", "records", choices=("records", "summaries"))
    node_dir: Path = field(default_factory=lambda: Path("~/.mlaas/node").expanduser())
    node_keep_predictions: int = setting("MLAAS_NODE_KEEP_PREDICTIONS", 50_000)
    # Private loopback ports of every worker (index = worker), for repository broadcasts.
    control_ports: tuple[int, ...] = ()
    worker_index: int = 0
    bulk: bool = False  # this worker is the bulk worker

    @property
    def small_requests_only(self) -> bool:
        """This worker leaves big requests (and inputs by reference) to the runtime's bulk worker."""
        return self.bulk_port >= 0 and not self.bulk

    @property
    def max_request_bytes(self) -> int:
        """The largest request this worker takes (gRPC message or REST body)."""
        return self.bulk_threshold_bytes if self.small_requests_only else MAX_MESSAGE_BYTES

    def too_large(self, size: int) -> str:
        """Why a request of `size` bytes is refused here."""
        where = "; larger requests go to the runtime's bulk port" if self.small_requests_only else ""
        return f"the request is {size} bytes; at most {self.max_request_bytes} here{where}"

    @property
    def managed(self) -> bool:
        """The runtime serves a deployment of the mesh (not a standalone operator's runtime)."""
        return bool(self.deployment_id)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RuntimeSettings:
        batch = read_env(BatchPolicy, env)
        # A tenant's rows default to half the queue configured here.
        half_queue = {} if env.get("MLAAS_MAX_INFLIGHT_ROWS_PER_TENANT") else {"max_rows": batch.max_queue_rows // 2}
        share = read_env(TenantShare, env, **half_queue)
        return read_env(
            cls, env, server=ServerSettings.from_env(env, "inference", 0), batch=batch, tenant_share=share,
            data_refs=read_env(DataRefPolicy, env), cache_dir=data_dir(env) / "runtime-cache",
            node_dir=data_dir(env) / "node",
        )  # fmt: skip
