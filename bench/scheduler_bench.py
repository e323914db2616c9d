"""Scheduler benchmark, each figure beside its baseline in the same run:

  deploy-to-READY (cold)  Deploy of a model nobody runs, until WatchDeployment says READY,
                          beside the bare cost of what it wraps: starting `python -m
                          inference_svc` for the same model and waiting for gRPC health.
  revival                 Deploy of a CACHED deployment (its last lease was dropped), which
                          answers READY at once (target: under 50 ms at the median), beside a
                          GetDeployment round trip.
  queue throughput        placements per second through the whole path (Deploy, Redis Streams
                          queue, placement lock, store updates, health check, READY) with a
                          backend that starts no process (every replica is one shared health
                          server), beside raw Redis Streams XADD + XREADGROUP + XACK per second,
                          with 100, 1,000 and 10,000 live deployments already placed; and the
                          placement step alone (lock, allocations, choice, record) at each size,
                          beside reading every deployment record (what placement did before the
                          running totals).
  head of line            a placeable Deploy behind 1,000 that no node can hold, to READY,
                          beside the same Deploy alone (same backend).

    .venv/bin/python bench/scheduler_bench.py [--cold 7] [--revivals 50] [--placements 300]

Everything is local: the embedded Redis, a registry and the scheduler in this process, runtime
processes as children. Writes bench/results/scheduler.json; medians are what to quote.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent import futures
from pathlib import Path

import grpc
import numpy as np
import redis
from grpc_health.v1 import health, health_pb2_grpc

from mlaas.client import RegistryClient, SchedulerClient
from mlaas.export import register_sklearn
from mlaas.local.redis_embedded import EmbeddedRedis
from mlaas.services.net import free_port, wait_healthy
from mlaas.services.settings import ServerSettings
from mlaas.v1 import scheduler_pb2, scheduler_pb2_grpc, types_pb2
from registry_svc.app import build_registry
from registry_svc.settings import RegistrySettings
from scheduler_svc.app import build_scheduler
from scheduler_svc.backends import JobSpec, ReplicaSpec, ReplicaStatus
from scheduler_svc.lifecycle import Lifecycle
from scheduler_svc.placer import Placer
from scheduler_svc.settings import SchedulerSettings, parse_nodes
from scheduler_svc.states import HOLDING
from scheduler_svc.store import DeploymentStore

HERE = Path(__file__).resolve().parent
S = scheduler_pb2
SMALL = types_pb2.Resources(cpu_millicores=100, memory_bytes=64 * 2**20)


class HealthOnlyBackend:
    """Replicas that cost nothing: each "starts" at once on one shared gRPC health server, so the
    queue benchmark measures the scheduler, not process start-up."""

    name = "health-only"

    def __init__(self):
        self._server = grpc.server(futures.ThreadPoolExecutor(4))
        health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), self._server)
        self.endpoint = f"127.0.0.1:{self._server.add_insecure_port('127.0.0.1:0')}"
        self._server.start()

    def create(self, spec: ReplicaSpec) -> ReplicaStatus:
        return ReplicaStatus(spec.replica_id, self.endpoint, True, handle="0")

    def start_job(self, spec: JobSpec) -> ReplicaStatus:
        raise NotImplementedError("the queue benchmark starts no training jobs")

    def status(self, replica: ReplicaStatus) -> ReplicaStatus:
        return replica

    def logs(self, replica: ReplicaStatus, lines: int = 100) -> str:
        return ""

    def delete(self, replica: ReplicaStatus, grace_seconds: float = 10.0) -> None:
        pass

    def node_store(self, deployment_id: str) -> str | None:
        return None  # its replicas keep nothing

    def forget(self, deployment_id: str) -> None:
        pass

    def close(self) -> None:
        self._server.stop(0)


def median_ms(values: list[float]) -> float:
    return round(statistics.median(values) * 1000, 1)


def bare_runtime_starts(registry: str, env: dict[str, str], runs: int) -> list[float]:
    """python -m inference_svc for the model, until gRPC health says SERVING."""
    times = []
    for _ in range(runs):
        port = free_port()
        command = [sys.executable, "-m", "inference_svc", "--model", "bench-0", "--registry", registry,
                   "--port", str(port), "--workers", "1", "--metrics-port", "-1"]  # fmt: skip
        started = time.perf_counter()
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_healthy(f"127.0.0.1:{port}", timeout=120)
        times.append(time.perf_counter() - started)
        process.terminate()
        process.wait()
    return times


def cold_deploys(scheduler: SchedulerClient, runs: int) -> list[float]:
    times = []
    for index in range(1, runs + 1):
        started = time.perf_counter()
        deployment = scheduler.deploy(f"bench-{index}")
        scheduler.wait_ready(deployment.id)
        times.append(time.perf_counter() - started)
    return times


def revivals(scheduler: SchedulerClient, runs: int) -> tuple[list[float], list[float]]:
    """(Deploy of a CACHED deployment, GetDeployment) round trips."""
    deployment = scheduler.deploy("bench-1")  # READY from the cold runs: a lease on it
    revive, get = [], []
    for _ in range(runs):
        scheduler.decommission(deployment.id)
        started = time.perf_counter()
        revived = scheduler.deploy("bench-1")
        revive.append(time.perf_counter() - started)
        assert revived.state == S.DEPLOYMENT_STATE_READY and revived.id == deployment.id
        started = time.perf_counter()
        scheduler.get(deployment.id)
        get.append(time.perf_counter() - started)
    return revive, get


def fill(store: DeploymentStore, live: int, node: str) -> None:
    """`live` READY deployments of one replica each on `node`, written through the store."""

    def placed(d: scheduler_pb2.Deployment) -> None:
        d.replica_status.add(id=f"{d.id}-r", node=node, endpoint="127.0.0.1:1", ready=True)

    for index in range(live):
        deployment = S.Deployment(model=types_pb2.ModelRef(name="filler", version=1), replicas=1,
                                  resources=SMALL, tenant=f"filler-{index % 50}")  # fmt: skip
        created, _ = store.create(deployment)
        store.update(created.id, placed, S.DEPLOYMENT_STATE_READY)


def wait_all_ready(store: DeploymentStore, ids: list[str]) -> None:
    pending = set(ids)
    while pending:
        pending = {d.id for d in store.get_many(sorted(pending)) if d.state != S.DEPLOYMENT_STATE_READY}
        time.sleep(0.005)


def queue_throughput(settings: SchedulerSettings, models: int, placements: int) -> float:
    """Deploy to READY per second, the whole path, over the live deployments already stored."""
    backend = HealthOnlyBackend()
    scheduler = build_scheduler(settings, dict(os.environ), "queue-bench", backend=backend).start()
    store = DeploymentStore(redis.Redis.from_url(settings.redis_url))
    try:
        with SchedulerClient(f"127.0.0.1:{scheduler.server.port}") as client:
            started = time.perf_counter()
            # STRICT deployments are never shared: every Deploy is a placement of its own.
            ids = [client.deploy(f"bench-{i % models}", strict_node="bench").id for i in range(placements)]
            wait_all_ready(store, ids)
            return len(set(ids)) / (time.perf_counter() - started)
    finally:
        scheduler.servicer.decommission_all()
        scheduler.stop(0)


def placement_step(settings: SchedulerSettings, placements: int) -> tuple[float, float]:
    """(placements/s of the Placer alone, lock to record; ms to read every deployment record)."""
    client = redis.Redis.from_url(settings.redis_url)
    store = DeploymentStore(client)
    placer = Placer(settings, client, store, Lifecycle(client, store, HealthOnlyBackend()))
    queued = [store.create(S.Deployment(model=types_pb2.ModelRef(name="step", version=1), replicas=1,
                                        resources=SMALL, tenant="step"))[0] for _ in range(placements)]  # fmt: skip

    def record(deployment_id: str):
        def on(nodes: tuple[str, ...]) -> scheduler_pb2.Deployment:
            return store.update(deployment_id, lambda d: d.replica_status.add(id="r", node=nodes[0]),
                                S.DEPLOYMENT_STATE_PLACING)  # fmt: skip

        return on

    started = time.perf_counter()
    for deployment in queued:
        placement, _ = placer.place(deployment, 1, record(deployment.id))
        assert placement.placed, placement.reason
    rate = placements / (time.perf_counter() - started)
    reads = []
    for _ in range(3):
        started = time.perf_counter()
        store.list(HOLDING)
        reads.append(time.perf_counter() - started)
    return rate, statistics.median(reads) * 1000


def at_scale(settings: SchedulerSettings, models: int, placements: int, sizes: list[int]) -> list[dict]:
    rows = []
    client = redis.Redis.from_url(settings.redis_url)
    for live in sizes:
        client.flushall()
        fill(DeploymentStore(client), live, "bench")
        step, read_all_ms = placement_step(settings, placements)
        whole = queue_throughput(settings, models, placements)
        rows.append({"live_deployments": live, "placement_step_per_s": round(step, 1),
                     "read_every_record_ms": round(read_all_ms, 1), "placements_per_s": round(whole, 1)})  # fmt: skip
        print(rows[-1], flush=True)
    client.flushall()
    return rows


def head_of_line(settings: SchedulerSettings, blocked: int, runs: int = 5) -> tuple[float, float]:
    """(ms to READY of a placeable Deploy alone, median; the same behind `blocked` unplaceable)."""
    backend = HealthOnlyBackend()
    scheduler = build_scheduler(settings, dict(os.environ), "hol-bench", backend=backend).start()
    too_big = types_pb2.Resources(cpu_millicores=10**9, memory_bytes=SMALL.memory_bytes)
    try:
        with SchedulerClient(f"127.0.0.1:{scheduler.server.port}") as client:

            def to_ready(index: int) -> float:
                started = time.perf_counter()
                client.wait_ready(client.deploy(f"bench-{index}", strict_node="bench").id)
                return time.perf_counter() - started

            alone = [to_ready(i) for i in range(runs)]
            with grpc.insecure_channel(f"127.0.0.1:{scheduler.server.port}") as channel:
                deploy = scheduler_pb2_grpc.SchedulerServiceStub(channel).Deploy
                for index in range(blocked):  # STRICT: a Deploy of its own each, never a shared lease
                    deploy(S.DeployRequest(model=types_pb2.ModelRef(name=f"bench-{index % 10}"), resources=too_big,
                                           mode=S.PLACEMENT_MODE_STRICT, node="bench"))  # fmt: skip
            behind = to_ready(runs)
            return statistics.median(alone) * 1000, behind * 1000
    finally:
        scheduler.servicer.decommission_all()
        scheduler.stop(0)


def redis_stream_ops(url: str, count: int) -> float:
    client = redis.Redis.from_url(url)
    stream, group = "bench:stream", "bench"
    client.xgroup_create(stream, group, id="0", mkstream=True)
    started = time.perf_counter()
    for i in range(count):
        client.xadd(stream, {"deployment": str(i)})
        for _, entries in client.xreadgroup(group, "c", {stream: ">"}, count=1):
            for entry_id, _ in entries:
                client.xack(stream, group, entry_id)
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cold", type=int, default=7)
    parser.add_argument("--revivals", type=int, default=50)
    parser.add_argument("--placements", type=int, default=300)
    parser.add_argument("--live", default="100,1000,10000", help="live deployments to place beside")
    parser.add_argument("--blocked", type=int, default=1000, help="unplaceable requests ahead")
    args = parser.parse_args()
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    work = Path(tempfile.mkdtemp(prefix="mlaas-scheduler-bench-"))
    X, y = load_iris(return_X_y=True)
    X = X.astype(np.float32)
    redis_server = EmbeddedRedis(work / "redis").start()
    registry = build_registry(
        RegistrySettings(server=ServerSettings(port=0, metrics_port=-1), data_dir=work / "registry")
    ).start()
    registry_address = f"127.0.0.1:{registry.port}"
    models = max(args.cold + 1, 20)
    with RegistryClient(registry_address) as client:
        for index in range(models):  # distinct models, so no Deploy shares another's replicas
            estimator = LogisticRegression(C=1.0 + index, max_iter=300).fit(X, y)
            register_sklearn(client, estimator, f"bench-{index}", X, run_resources=SMALL)
    env = dict(os.environ, MLAAS_DATA_DIR=str(work / "runtime"))
    settings = SchedulerSettings(
        server=ServerSettings(port=0, metrics_port=-1, shutdown_grace_seconds=1),
        redis_url=redis_server.url,
        registry_address=registry_address,
        data_dir=work / "scheduler",
        nodes=parse_nodes("bench:cpu=64,memory=64Gi"),
        activator_port=0,
        activator_http_port=0,
    )
    results: dict[str, object] = {"machine_cpus": os.cpu_count()}
    try:
        bare_runtime_starts(registry_address, env, 1)  # warm the artifact cache and the page cache
        bare = bare_runtime_starts(registry_address, env, args.cold)
        scheduler = build_scheduler(settings, env).start()
        try:
            with SchedulerClient(f"127.0.0.1:{scheduler.server.port}") as client:
                cold = cold_deploys(client, args.cold)
                revive, get = revivals(client, args.revivals)
        finally:
            scheduler.servicer.decommission_all()
            scheduler.stop(0)
        redis.Redis.from_url(redis_server.url).flushall()
        stream_ops = redis_stream_ops(redis_server.url, 2000)
        big = dataclasses.replace(settings, nodes=parse_nodes("bench:cpu=100000,memory=100Ti"))
        scale = at_scale(big, models, args.placements, [int(n) for n in args.live.split(",")])
        alone_ms, behind_ms = head_of_line(settings, args.blocked)
    finally:
        registry.stop(0)
        redis_server.stop()
    results.update(
        bare_runtime_start_ms=median_ms(bare),
        deploy_to_ready_ms=median_ms(cold),
        deploy_overhead_ratio=round(statistics.median(cold) / statistics.median(bare), 2),
        revival_ms=median_ms(revive),
        revival_p90_ms=round(sorted(revive)[int(0.9 * len(revive))] * 1000, 1),
        get_deployment_ms=median_ms(get),
        redis_stream_roundtrips_per_s=round(stream_ops, 1),
        at_scale=scale,
        placeable_alone_ms=round(alone_ms, 1),
        placeable_behind_unplaceable_ms=round(behind_ms, 1),
        unplaceable_ahead=args.blocked,
        head_of_line_ratio=round(behind_ms / alone_ms, 2),
    )
    print(json.dumps(results, indent=2))
    (HERE / "results" / "scheduler.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
