"""A scheduler on real parts: the embedded Redis, a registry with iris models, the scheduler's
gRPC server with its placement workers and reconcile loop, and runtime child processes."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import grpc
import pytest

from mlaas.client import RegistryClient
from mlaas.export import register_sklearn
from mlaas.local.redis_embedded import EmbeddedRedis
from mlaas.services.settings import ServerSettings
from mlaas.v1 import scheduler_pb2, scheduler_pb2_grpc, types_pb2
from scheduler_svc.app import Scheduler, build_scheduler
from scheduler_svc.backends import Backend
from scheduler_svc.settings import SchedulerSettings, parse_nodes
from tests.conftest import tool_env

S = scheduler_pb2
ONE_CPU = types_pb2.Resources(cpu_millicores=1000, memory_bytes=256 * 2**20)


@dataclass
class Parts:
    settings: SchedulerSettings
    redis: EmbeddedRedis
    registry_address: str
    # start(env, make_backend, **settings changes): one more scheduler on the same Redis
    start: Callable[..., Scheduler]
    runtime_env: dict[str, str]


@pytest.fixture
def parts(request, tmp_path, registry, iris_model) -> Iterator[Parts]:
    """Registry with iris, iris-b, iris-c (1 CPU each), Redis, and a scheduler factory over two
    nodes. The cache TTL is 10 min unless the test says otherwise, so that timing never decides
    a test that is not about the TTL. Jobs start cold unless the test asks for warm trainers
    (warm_trainers=True): each costs seconds of CPU to warm up, which only the tests of the
    retraining loop need. Every scheduler started is stopped with its replicas."""
    model, X, _ = iris_model
    registry_address = f"127.0.0.1:{registry.port}"
    with RegistryClient(registry_address) as client:
        for name in ("iris", "iris-b", "iris-c"):
            register_sklearn(client, model, name, X, run_resources=ONE_CPU)
    redis_server = EmbeddedRedis(tmp_path / "redis").start()
    settings = SchedulerSettings(
        server=ServerSettings(port=0, metrics_port=-1, shutdown_grace_seconds=2),
        redis_url=redis_server.url,
        registry_address=registry_address,
        data_dir=tmp_path / "scheduler",
        nodes=parse_nodes("node-a:cpu=2,memory=4Gi;tiny:cpu=500m,memory=512Mi"),
        placement_timeout_seconds=2.0,
        start_timeout_seconds=60.0,
        reconcile_interval_seconds=0.3,
        restart_backoff_seconds=0.5,
        jobs_dir=tmp_path / "jobs",
        warm_trainers=False,
        activator_port=0,
        activator_http_port=0,
    )
    runtime_env = tool_env(MLAAS_DATA_DIR=str(tmp_path / "runtime"))
    started: list[Scheduler] = []

    def start(
        env: dict[str, str] | None = None,
        make_backend: Callable[[SchedulerSettings, dict], Backend] | None = None,
        **changes,
    ) -> Scheduler:
        """`env`: more environment for the runtimes it starts; `make_backend(settings, env)`: its
        backend, if not the one the settings name."""
        changed, env = dataclasses.replace(settings, **changes), {**runtime_env, **(env or {})}
        backend = make_backend(changed, env) if make_backend else None
        scheduler = build_scheduler(changed, env, f"s{len(started)}", backend)
        started.append(scheduler.start())
        return scheduler

    made = Parts(settings, redis_server, registry_address, start, runtime_env)
    yield made
    try:
        for index, scheduler in enumerate(started):  # the last one also stops every replica
            scheduler.stop(0, stop_replicas=index == len(started) - 1)
    finally:
        made.redis.stop()  # the test may have restarted it


@pytest.fixture
def mesh(request, parts, iris_model):
    """(stub, X, model, scheduler address) for one started scheduler; the cache TTL in seconds
    is the test's indirect parameter."""
    model, X, _ = iris_model
    scheduler = parts.start(cache_ttl_seconds=getattr(request, "param", 600.0))
    address = f"127.0.0.1:{scheduler.server.port}"
    with grpc.insecure_channel(address) as channel:
        yield stub_of(channel), X, model, address


def stub_of(channel) -> scheduler_pb2_grpc.SchedulerServiceStub:
    return scheduler_pb2_grpc.SchedulerServiceStub(channel)


def watch_until(stub, deployment_id, final_states, detail: str = "") -> list:
    """Events until one in `final_states` (whose detail contains `detail`, if given)."""
    events = []
    for update in stub.WatchDeployment(S.WatchDeploymentRequest(deployment_id=deployment_id), timeout=120):
        events.append(update)
        if update.event.state in final_states and detail in update.event.detail:
            break
    return events
