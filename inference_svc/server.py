"""Runs the runtime: a parent process that spawns N worker processes sharing one port
(SO_REUSEPORT, as in gRPC's Python multiprocessing example), serves their summed Prometheus
metrics, and stops them gracefully on SIGTERM. Each worker (built by app.py) has its own event
loop, batchers and ONNX sessions."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import shutil
import signal
import tempfile
from pathlib import Path

import psutil

from inference_svc.app import build_worker
from inference_svc.cores import LongCalls
from inference_svc.settings import RuntimeSettings
from mlaas.auth import Authenticator
from mlaas.net import free_port, port_is_free
from mlaas.server import bind_host
from mlaas.supervisor import die_with_parent

log = logging.getLogger(__name__)


async def run_worker(settings: RuntimeSettings, long_calls: LongCalls) -> None:
    """One worker process: serves until SIGTERM or SIGINT, then drains."""
    worker = build_worker(settings, long_calls)
    await worker.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await worker.stop()


def _worker_main(settings: RuntimeSettings, parent_pid: int, long_calls: LongCalls) -> None:
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s worker{settings.worker_index} %(name)s %(message)s")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    die_with_parent(parent_pid)  # an orphan would keep serving on the shared port
    asyncio.run(run_worker(settings, long_calls))


def _serve_metrics(port: int, host: str) -> int:
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    server, _ = start_http_server(port, addr=host, registry=registry)
    return server.server_address[1]


METRICS_DIR_PREFIX = "mlaas-runtime-metrics-"


def _remove_orphaned_metrics_dirs() -> None:
    """The Prometheus directories of runtimes killed before they could remove theirs (each is
    named after its runtime's pid)."""
    for stale in Path(tempfile.gettempdir()).glob(f"{METRICS_DIR_PREFIX}*"):
        pid = stale.name.removeprefix(METRICS_DIR_PREFIX).split("-", 1)[0]
        if pid.isdigit() and not psutil.pid_exists(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)


def run(settings: RuntimeSettings) -> int:
    """Spawns the workers and supervises them until SIGTERM/SIGINT or a worker dies."""
    import dataclasses

    port = settings.server.port or free_port()
    http_port = settings.http_port
    while http_port == 0 or (http_port == port and not settings.http_port):
        http_port = free_port()
    if http_port == port:
        log.error("--http-port and --port are both %d: gRPC and REST need a port each", port)
        return 1
    # The workers share the ports (SO_REUSEPORT), which would let them share one with another
    # runtime that holds it already, silently: a port in use is refused before any worker binds.
    host = bind_host(settings.server, Authenticator.for_server(settings.server))
    for taken in (p for p in (port, http_port) if p >= 0 and not port_is_free(p, host)):
        log.error("port %d is in use; not sharing it with whatever holds it", taken)
        return 1
    workers = max(1, settings.workers)
    control_ports = tuple(free_port() for _ in range(workers)) if workers > 1 else ()
    _remove_orphaned_metrics_dirs()
    metrics_dir = tempfile.mkdtemp(prefix=f"{METRICS_DIR_PREFIX}{os.getpid()}-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir  # inherited by the spawned workers
    context = multiprocessing.get_context("spawn")  # grpc must not be forked after initialisation
    long_calls = LongCalls()
    processes = []
    for index in range(workers):
        worker_settings = dataclasses.replace(
            settings,
            server=dataclasses.replace(settings.server, port=port),
            http_port=http_port,
            control_ports=control_ports,
            worker_index=index,
        )
        process = context.Process(
            target=_worker_main, args=(worker_settings, os.getpid(), long_calls), name=f"inference-worker-{index}"
        )
        process.start()
        processes.append(process)
    if settings.server.metrics_port >= 0:
        metrics_port = _serve_metrics(settings.server.metrics_port, "127.0.0.1")
        log.info("metrics on 127.0.0.1:%d/metrics", metrics_port)
    log.info("runtime on port %d%s with %d worker(s)", port, f" (REST {http_port})" if http_port >= 0 else "", workers)

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
