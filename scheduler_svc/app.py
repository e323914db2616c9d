"""Wires the scheduler together: its gRPC service and its placement workers."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import redis

from mlaas.auth import Authenticator
from mlaas.server import MeshServer, Service
from mlaas.v1 import scheduler_pb2, scheduler_pb2_grpc
from scheduler_svc.backends.local import LocalBackend
from scheduler_svc.lifecycle import CacheJanitor, Lifecycle
from scheduler_svc.queue import DeploymentQueue
from scheduler_svc.servicer import SchedulerServicer
from scheduler_svc.settings import SchedulerSettings
from scheduler_svc.store import DeploymentStore
from scheduler_svc.worker import PlacementWorker

SERVICE_NAME = scheduler_pb2.DESCRIPTOR.services_by_name["SchedulerService"].full_name


@dataclass
class Scheduler:
    server: MeshServer
    workers: list[threading.Thread]
    stop_workers: threading.Event
    servicer: SchedulerServicer

    def start(self) -> Scheduler:
        self.server.start()
        for worker in self.workers:
            worker.start()
        return self

    def stop(self, grace: float | None = None, remove_replicas: bool = False) -> None:
        self.stop_workers.set()
        self.server.stop(grace)
        for worker in self.workers:
            worker.join(10)
        if remove_replicas:
            self.servicer.decommission_all()


def build_scheduler(settings: SchedulerSettings, env: dict[str, str], name: str = "scheduler") -> Scheduler:
    """`env` is the environment the runtime processes start with."""
    authenticator = Authenticator.from_file(settings.server.auth_tokens_file)
    client = redis.Redis.from_url(settings.redis_url)
    store = DeploymentStore(client)
    queue = DeploymentQueue(client, idle_ms=settings.claim_idle_ms)
    backend = LocalBackend(settings.registry_address, settings.data_dir / "replicas", env)
    lifecycle = Lifecycle(client, store, backend)
    servicer = SchedulerServicer(settings, store, queue, lifecycle, authenticator)
    service = Service(SERVICE_NAME, servicer, scheduler_pb2_grpc.add_SchedulerServiceServicer_to_server)
    stop = threading.Event()
    workers = [
        PlacementWorker(f"{name}-w{i}", settings, client, store, queue, backend, lifecycle, stop)
        for i in range(settings.placement_workers)
    ]
    janitor = CacheJanitor(lifecycle, settings.cache_ttl_seconds, stop)
    server = MeshServer("scheduler", settings.server, [service], authenticator)
    return Scheduler(server, [*workers, janitor], stop, servicer)
