"""Runs the runtime: a parent process that spawns N worker processes sharing one port
(SO_REUSEPORT, as in gRPC's Python multiprocessing example), serves their summed Prometheus
metrics, and stops them gracefully on SIGTERM. Each worker has its own event loop, batchers and
ONNX sessions."""

from __future__ import annotations

import asyncio
import gc
import logging
import multiprocessing
import os
import shutil
import signal
import tempfile

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from inference_svc.access import DeploymentAccess, RuntimeAccessInterceptor, own_tenant, scheduler_check
from inference_svc.dataplane import DataPlane
from inference_svc.feedback import DiscardSink, FeedbackTap
from inference_svc.metrics import RuntimeMetrics
from inference_svc.monitor_sink import MonitorSink
from inference_svc.repository import ModelRepository
from inference_svc.servicer import InferenceServicer
from inference_svc.settings import RuntimeSettings
from inference_svc.summary_sink import SummarySink
from inference_svc.wire import add_inference_service
from mlaas.auth import SCHEDULER, Authenticator
from mlaas.interceptors import AioAuthInterceptor
from mlaas.net import free_port, port_is_free
from mlaas.oip import open_inference_v2_pb2 as oip
from mlaas.server import MAX_MESSAGE_BYTES, add_port, bind_host, tls_mode
from mlaas.supervisor import die_with_parent

log = logging.getLogger(__name__)
SERVICE_NAME = oip.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name


async def run_worker(settings: RuntimeSettings) -> None:
    authenticator = Authenticator.for_server(settings.server)
    metrics = RuntimeMetrics()
    repository = ModelRepository(settings, metrics)
    sink = DiscardSink()
    if settings.monitor_address and settings.deployment_id:
        kind = SummarySink if settings.feedback_mode == "summaries" else MonitorSink
        sink = kind(settings.monitor_address, settings.deployment_id, settings.registry_token)
    feedback = FeedbackTap(settings.feedback_capacity, sink, dropped_metric=metrics.feedback_dropped)
    for ref in settings.models:
        await repository.load_ref(ref)
    for name, uri in settings.model_uris:
        await repository.load_uri(name, uri)

    siblings = [f"127.0.0.1:{p}" for i, p in enumerate(settings.control_ports) if i != settings.worker_index]
    servicer = InferenceServicer(settings, repository, DataPlane(settings, repository, feedback, metrics), siblings)
    server = grpc.aio.server(
        interceptors=_interceptors(settings, authenticator),
        options=[
            ("grpc.so_reuseport", 1),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ],
    )
    add_inference_service(servicer, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME], server
    )
    host = bind_host(settings.server, authenticator)
    if add_port(server, f"{host}:{settings.server.port}", settings.server.tls) == 0:
        raise OSError(f"cannot listen on {host}:{settings.server.port}")
    if settings.control_ports:
        # The workers' private port (repository changes repeated to siblings) stays plaintext:
        # it listens on loopback only, so its traffic never leaves this host (or pod), and the
        # mesh's certificate need not name 127.0.0.1. The auth interceptor still guards it; what
        # it does not ask for, under mTLS, is a client certificate from a process of this host.
        server.add_insecure_port(f"127.0.0.1:{settings.control_ports[settings.worker_index]}")
    await server.start()
    # What start-up made (modules, sessions) lives as long as the worker: keep it out of the
    # garbage collector's scans, which the request path's allocations otherwise trigger.
    gc.collect()
    gc.freeze()
    feedback.start()
    gauges = asyncio.get_running_loop().create_task(repository.refresh_gauges())
    flusher = asyncio.get_running_loop().create_task(metrics.flush_forever())
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info(
        "worker %d serving %s on %s:%d (%s)", settings.worker_index, [m.name for m in repository.all()], host,
        settings.server.port, tls_mode(settings.server.tls),
    )  # fmt: skip

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    servicer.drain()
    await health_servicer.enter_graceful_shutdown()
    await server.stop(settings.server.shutdown_grace_seconds)
    gauges.cancel()
    flusher.cancel()
    metrics.flush()  # what the last half second observed
    await feedback.stop()
    await repository.close()
    log.info("worker %d stopped", settings.worker_index)


def _interceptors(settings: RuntimeSettings, authenticator: Authenticator) -> list:
    """Authentication; on a deployment's runtime, also who may use that deployment."""
    if not authenticator.enabled:
        return []
    if not settings.managed:
        operator = own_tenant(authenticator, settings.registry_token)
        return [AioAuthInterceptor(authenticator), RuntimeAccessInterceptor(authenticator, None, operator)]
    if not settings.scheduler_address:
        raise ValueError("a deployment's runtime under auth needs MLAAS_SCHEDULER_ADDR to check who may use it")
    access = DeploymentAccess(scheduler_check(settings.scheduler_address, settings.deployment_id))
    return [AioAuthInterceptor(authenticator), RuntimeAccessInterceptor(authenticator, access, SCHEDULER)]


def _worker_main(settings: RuntimeSettings, parent_pid: int) -> None:
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s worker{settings.worker_index} %(name)s %(message)s")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    die_with_parent(parent_pid)  # an orphan would keep serving on the shared port
    asyncio.run(run_worker(settings))


def _serve_metrics(port: int, host: str) -> int:
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    server, _ = start_http_server(port, addr=host, registry=registry)
    return server.server_address[1]


def run(settings: RuntimeSettings) -> int:
    """Spawns the workers and supervises them until SIGTERM/SIGINT or a worker dies."""
    import dataclasses

    port = settings.server.port or free_port()
    # The workers share the port (SO_REUSEPORT), which would let them share it with another
    # runtime that holds it already, silently: a port in use is refused before any worker binds.
    if not port_is_free(port, bind_host(settings.server, Authenticator.for_server(settings.server))):
        log.error("port %d is in use; not sharing it with whatever holds it", port)
        return 1
    workers = max(1, settings.workers)
    control_ports = tuple(free_port() for _ in range(workers)) if workers > 1 else ()
    metrics_dir = tempfile.mkdtemp(prefix="mlaas-runtime-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir  # inherited by the spawned workers
    context = multiprocessing.get_context("spawn")  # grpc must not be forked after initialisation
    processes = []
    for index in range(workers):
        worker_settings = dataclasses.replace(
            settings,
            server=dataclasses.replace(settings.server, port=port),
            control_ports=control_ports,
            worker_index=index,
        )
        process = context.Process(
            target=_worker_main, args=(worker_settings, os.getpid()), name=f"inference-worker-{index}"
        )
        process.start()
        processes.append(process)
    if settings.server.metrics_port >= 0:
        metrics_port = _serve_metrics(settings.server.metrics_port, "127.0.0.1")
        log.info("metrics on 127.0.0.1:%d/metrics", metrics_port)
    log.info("runtime on port %d with %d worker(s)", port, workers)

    stopping = False

    def on_signal(signum, _frame):
        nonlocal stopping
        stopping = True
        for p in processes:
            if p.is_alive():
                os.kill(p.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    exit_code = 0
    try:
        while any(p.is_alive() for p in processes):
            for p in processes:
                p.join(0.2)
                if not p.is_alive() and p.exitcode not in (0, None) and not stopping:
                    log.error("%s exited with %s; stopping the runtime", p.name, p.exitcode)
                    exit_code = 1
                    on_signal(signal.SIGTERM, None)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)  # the workers' Prometheus files end with them
    return exit_code
