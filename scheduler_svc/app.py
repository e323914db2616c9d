"""Wires the scheduler together: its gRPC service, its placement workers, the cache janitor,
the reconcile loop and the training-job watcher."""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

import redis
from prometheus_client import CollectorRegistry

from mlaas import tls
from mlaas.client import RegistryClient
from mlaas.services.auth import Authenticator, MeshKey
from mlaas.services.periodic import Periodic
from mlaas.services.server import MeshServer, Service, bind_host
from mlaas.v1 import scheduler_pb2, scheduler_pb2_grpc
from scheduler_svc.access import Access
from scheduler_svc.activation import Activation, CallSlots
from scheduler_svc.activator import Activator, ActivatorServer, Router
from scheduler_svc.activator_http import HttpActivator, HttpActivatorServer
from scheduler_svc.autoscaler import Autoscaler, LoadReader
from scheduler_svc.backends import Backend
from scheduler_svc.backends.docker import DockerBackend
from scheduler_svc.backends.k8s_manifests import TOKENS_SECRET, MountedTLS
from scheduler_svc.backends.kubernetes import KubernetesBackend
from scheduler_svc.backends.local import LocalBackend
from scheduler_svc.deploys import Deploys
from scheduler_svc.jobs import JobStore, TrainingJobs
from scheduler_svc.lifecycle import Lifecycle
from scheduler_svc.placer import Placer
from scheduler_svc.queue import DeploymentQueue
from scheduler_svc.reconcile import Reconciler, ReconcileSettings
from scheduler_svc.replica_models import ReplicaModels, renew_credentials
from scheduler_svc.replicas import Replicas
from scheduler_svc.rollout import Rollout
from scheduler_svc.servicer import SchedulerServicer
from scheduler_svc.settings import DOCKER_HOST_LABEL, SchedulerSettings
from scheduler_svc.states import TERMINAL, WATCHED
from scheduler_svc.store import DeploymentStore
from scheduler_svc.training import Training
from scheduler_svc.updates import Updates
from scheduler_svc.views import Views
from scheduler_svc.waiting import WaitingRoom
from scheduler_svc.worker import PlacementWorker

log = logging.getLogger(__name__)
SERVICE_NAME = scheduler_pb2.DESCRIPTOR.services_by_name["SchedulerService"].full_name


@dataclass
class Scheduler:
    server: MeshServer
    workers: list[threading.Thread]
    stop_workers: threading.Event
    servicer: SchedulerServicer
    backend: Backend
    registry: RegistryClient
    reconciler: Reconciler
    store: DeploymentStore
    lifecycle: Lifecycle
    jobs: TrainingJobs
    job_store: JobStore
    load_reader: LoadReader
    activator: Activators
    # How long a stop waits for its loops: a placement worker may be waiting for a replica to
    # become healthy (the start timeout).
    join_seconds: float = 130.0

    def start(self) -> Scheduler:
        self.reconciler.bring_back()
        self.server.start()
        self.activator.start()
        for worker in self.workers:
            worker.start()
        return self

    def stop(self, grace: float | None = None, stop_replicas: bool = False) -> None:
        """`stop_replicas`: this process's replicas and jobs go with it (`mlaas up`); READY and
        CACHED deployments stay so, for the next start to bring back."""
        self.stop_workers.set()
        self.server.stop(grace)
        self.activator.stop(grace)
        # Every loop ends before the replicas stop: a reconcile round or a placement still going
        # would start a replica after them, and nothing would ever stop it.
        deadline = time.monotonic() + self.join_seconds
        for worker in self.workers:
            worker.join(max(0.0, deadline - time.monotonic()))
            if worker.is_alive():
                log.warning("%s did not stop within %.0fs", worker.name, self.join_seconds)
        if stop_replicas:
            self.reconciler.stop_all("the mesh shut down; its next start brings the replicas back")
            self._end_the_rest()
        self.backend.close()
        self.registry.close()
        self.load_reader.close()

    def _end_the_rest(self) -> None:
        """When `mlaas up` shuts the mesh down, after the READY and CACHED deployments' replicas
        stopped: a deployment still on its way (placed, starting, rolling) is destroyed with the
        reason, and every training job is cancelled (a local job runs in a session of its own,
        and nothing would stop it at its deadline once the scheduler is gone)."""
        for deployment in self.store.list():
            if deployment.state not in TERMINAL and deployment.state not in WATCHED:
                state = scheduler_pb2.DeploymentState.Name(deployment.state)
                self.lifecycle.destroy(deployment, f"the mesh shut down while it was {state}; deploy it again")
        for job in self.job_store.live():
            self.jobs.cancel(job, "the mesh shut down")


# Runtimes ask the scheduler who may use their deployment; their credential comes with each spec.
CONTAINER_ENV = (
    "MLAAS_REGISTRY_ADDR", "MLAAS_MONITOR_ADDR", "MLAAS_SCHEDULER_ADDR", "MLAAS_ALLOW_PLAINTEXT", *tls.ALL_ENV,
)  # fmt: skip


def container_env(env: Mapping[str, str]) -> dict[str, str]:
    """What a replica or job container is told about the mesh (never the scheduler's whole
    environment): where the services are and its TLS files (which a container mounts where the
    scheduler has them)."""
    return {k: v for k, v in env.items() if k in CONTAINER_ENV}


def kubernetes_backend(settings: SchedulerSettings, env: dict[str, str]) -> tuple[Backend, SchedulerSettings]:
    """The Kubernetes backend (in-cluster config, else ~/.kube/config) and the settings with the
    cluster's nodes as the placement inventory."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:  # KUBECONFIG read now: the client reads it once, at import
        config.load_kube_config(config_file=env.get("KUBECONFIG") or os.environ.get("KUBECONFIG"))
    image, jobs = settings.runtime_image, str(settings.training_dir)
    tokens = TOKENS_SECRET if settings.server.auth_tokens_file else ""  # a mesh with auth: runtimes too
    served = settings.server.tls  # a mesh over TLS: runtimes too, from the mesh's Secret
    mounted = MountedTLS(settings.k8s_tls_secret, served.mutual) if served else None
    backend = KubernetesBackend(
        client.ApiClient(), settings.k8s_namespace, image, container_env(env), jobs, tokens, mounted
    )
    return backend, dataclasses.replace(settings, nodes=backend.nodes())


def mesh_key(settings: SchedulerSettings, authenticator: Authenticator) -> MeshKey | None:
    """The key that signs runtimes' and jobs' credentials; a mesh with auth cannot do without."""
    if not authenticator.enabled:
        return None
    if not settings.server.mesh_key_file:
        raise ValueError(
            "with MLAAS_AUTH_TOKENS_FILE the scheduler needs MLAAS_MESH_KEY_FILE to give runtimes their credentials"
        )
    return MeshKey.from_file(settings.server.mesh_key_file)


@dataclass
class Activators:
    """The activator's servers, bound: over gRPC and over HTTP (either may be off)."""

    grpc: ActivatorServer | None
    http: HttpActivatorServer | None

    def start(self) -> None:
        if self.grpc is not None:
            self.grpc.start()

    def stop(self, grace: float | None) -> None:
        if self.grpc is not None:
            self.grpc.stop(grace)
        if self.http is not None:
            self.http.stop()

    def endpoints(self) -> tuple[str, str]:
        """(gRPC, HTTP) where clients reach them, "" for one that is off."""
        return (self.grpc.endpoint if self.grpc else "", self.http.endpoint if self.http else "")


def activators(settings: SchedulerSettings, activation: Activation, authenticator: Authenticator) -> Activators:
    """The activator on its ports (MLAAS_ACTIVATOR_PORT, MLAAS_ACTIVATOR_HTTP_PORT; -1: off)."""
    slots = CallSlots(settings.activator_calls, settings.activator_calls_per_caller, "activator calls")
    router = Router(activation, authenticator, slots)
    host = bind_host(settings.server, authenticator)
    # One thread per call it holds, and a few for the calls it refuses when they are all taken.
    threads = settings.activator_calls + 4
    served = None
    if settings.activator_port >= 0:
        served = ActivatorServer(Activator(router), host, settings.activator_port, settings.server.tls, threads)
    http_served = None
    if settings.activator_http_port >= 0:
        app = HttpActivator(router, threads, tls.client_tls())
        grace = settings.server.shutdown_grace_seconds
        http_served = HttpActivatorServer(app, host, settings.activator_http_port, settings.server.tls, grace)
    return Activators(served, http_served)


def build_scheduler(
    settings: SchedulerSettings, env: dict[str, str], name: str = "scheduler", backend: Backend | None = None
) -> Scheduler:
    """`env` is the environment the runtime processes start with; `backend` defaults to local
    child processes."""
    authenticator = Authenticator.for_server(settings.server)
    client = redis.Redis.from_url(settings.redis_url)
    store = DeploymentStore(client, settings.retention_seconds)
    queue = DeploymentQueue(client, idle_ms=settings.claim_idle_ms)
    if backend is None and settings.backend == "kubernetes":
        backend, settings = kubernetes_backend(settings, env)
    if backend is None and settings.backend == "docker":
        engines = {n.name: n.labels[DOCKER_HOST_LABEL] for n in settings.nodes if DOCKER_HOST_LABEL in n.labels}
        backend = DockerBackend(
            settings.runtime_image, container_env(env), str(settings.training_dir), engines,
            warm_jobs=settings.warm_trainers,
        )  # fmt: skip
    backend = backend or LocalBackend.for_settings(settings, env)
    key = mesh_key(settings, authenticator)
    replicas = Replicas(store, backend, settings.start_timeout_seconds, key, settings.credential_seconds)
    lifecycle = Lifecycle(client, store, backend)
    job_store = JobStore(client, settings.retention_seconds)
    placer = Placer(settings, client, store, lifecycle, job_store.allocations)
    jobs = TrainingJobs(
        job_store, placer, backend, settings.training_dir, key, settings.training_deadline_seconds,
        settings.max_input_bytes,
    )  # fmt: skip
    # Long enough for a rollout to start replicas and drain the old ones.
    models = ReplicaModels(replicas, settings.token, timeout_seconds=settings.start_timeout_seconds)
    rollout = Rollout(store, replicas, placer, lifecycle, settings.start_timeout_seconds + 120, models)
    waiting_room = WaitingRoom(settings, store, queue, placer)
    registry = RegistryClient(settings.registry_address)  # each call carries its caller's token
    deploys = Deploys(settings, store, lifecycle, waiting_room, registry, quotas=authenticator.enabled)
    access = Access(authenticator, lifecycle)
    tenant_cap = settings.max_replicas_per_tenant if authenticator.enabled else None
    updates = Updates(store, queue, lifecycle, access, registry, tenant_cap)
    training = Training(jobs, job_store, store, access, registry, settings.backend)
    metrics = CollectorRegistry()
    # ActivateDeployment's waits hold the scheduler's rpc threads: at most half of them, a
    # quarter of those for one caller.
    waits = max(2, settings.server.max_workers // 2)
    rpc_waits = CallSlots(waits, max(1, waits // 4), "ActivateDeployment calls")
    activation = Activation(store, updates, access, settings.start_timeout_seconds, metrics, rpc_waits)
    activator = activators(settings, activation, authenticator)
    views = Views(settings, store, job_store, access, *activator.endpoints())
    servicer = SchedulerServicer(authenticator, store, deploys, updates, training, views, activation)
    service = Service(SERVICE_NAME, servicer, scheduler_pb2_grpc.add_SchedulerServiceServicer_to_server)
    stop = threading.Event()
    workers = [
        PlacementWorker(f"{name}-w{i}", settings, store, queue, replicas, placer, rollout, stop)
        for i in range(settings.placement_workers)
    ]
    ttl = settings.cache_ttl_seconds
    janitor = Periodic("cache-janitor", lambda: lifecycle.expire(ttl), 0.5, stop)
    reconcile = ReconcileSettings(
        interval_seconds=settings.reconcile_interval_seconds,
        start_timeout_seconds=settings.start_timeout_seconds,
        backoff_seconds=settings.restart_backoff_seconds,
        backoff_reset_seconds=settings.restart_backoff_reset_seconds,
    )
    reconciler = Reconciler(store, replicas, lifecycle, reconcile, models)
    reconcile_loop = Periodic("reconciler", reconciler.reconcile_once, reconcile.interval_seconds, stop)
    server = MeshServer("scheduler", settings.server, [service], authenticator, metrics_registry=metrics)
    load_reader = LoadReader(settings.token)
    autoscaler = Autoscaler(store.list, updates.rescale, load_reader, metrics, tenant_cap)
    autoscaling = Periodic("autoscaler", autoscaler.run_once, settings.autoscale_interval_seconds, stop)
    # Often: a warm job takes a few tenths of a second, and its end is on the retraining loop's path.
    job_checks = Periodic("job-watcher", jobs.check, 0.1, stop)
    waiting = Periodic("waiting-room", waiting_room.revisit, 1.0, stop)
    # Every third of a credential's life: a renewal that fails is tried twice more before it expires.
    renewer = Periodic(
        "credential-renewer", lambda: renew_credentials(store, models), settings.credential_seconds / 3, stop
    )
    loops = [*workers, janitor, reconcile_loop, job_checks, waiting, renewer, autoscaling]
    return Scheduler(
        server,
        loops,
        stop,
        servicer,
        backend,
        registry,
        reconciler,
        store,
        lifecycle,
        jobs,
        job_store,
        load_reader,
        activator,
        join_seconds=settings.start_timeout_seconds + 10,
    )
