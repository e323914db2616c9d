"""Runs the runtime: a parent process that starts N worker processes sharing one port
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
import threading
from collections.abc import Collection
from pathlib import Path

import psutil

from inference_svc.cores import LongCalls
from inference_svc.load import ReplicaLoad
from inference_svc.settings import RuntimeSettings
from mlaas.services.auth import Authenticator
from mlaas.services.lifetime import die_with_parent
from mlaas.services.net import free_port, port_is_free
from mlaas.services.server import bind_host

log = logging.getLogger(__name__)


async def run_worker(settings: RuntimeSettings, long_calls: LongCalls, load: ReplicaLoad) -> None:
    """One worker process: serves until SIGTERM or SIGINT, then drains."""
    # Imported here, in the worker, only: the parent never serves, and importing the data plane
    # (gRPC servers, ONNX Runtime, the clients) cost it 0.18 CPU-s on every replica start.
    from inference_svc.app import build_worker

    worker = build_worker(settings, long_calls, load)
    await worker.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await worker.stop()


def _worker_main(settings: RuntimeSettings, parent_pid: int, long_calls: LongCalls, load: ReplicaLoad) -> None:
    logging.basicConfig(  # force: a forked worker has its parent's set-up
        level=logging.INFO, format=f"%(asctime)s worker{settings.worker_index} %(name)s %(message)s", force=True
    )
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    die_with_parent(parent_pid)  # an orphan would keep serving on the shared port
    if settings.bulk:
        keep_to_bulk_cores(settings.bulk_cores)
    asyncio.run(run_worker(settings, long_calls, load))


def keep_to_bulk_cores(count: int) -> None:
    """Keeps this process (and the ONNX Runtime threads it starts) to the last `count` of the
    CPUs it may use, leaving the others to the workers of small requests: on a shared core, a
    busy neighbour raised a 1-row call's p99 from 0.8 to 4 ms even at the lowest priority
    (bench/interference_bench.py). Nothing when `count` leaves no CPU to the others."""
    allowed = sorted(os.sched_getaffinity(0))
    if 0 < count < len(allowed):
        os.sched_setaffinity(0, allowed[-count:])


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


def _free_port_but(taken: Collection[int]) -> int:
    """A free port none of `taken` (picked, not bound yet: the kernel may offer one twice)."""
    while (port := free_port()) in taken:
        continue
    return port


def _pick_ports(settings: RuntimeSettings, taken: Collection[int] = ()) -> tuple[int, int, int] | None:
    """(gRPC, REST, bulk gRPC) ports, -1 for one that is off and a free one, none of `taken`,
    for each 0; None (and why, logged) when two are the same or one is in use."""
    port = settings.server.port or _free_port_but(taken)
    chosen = [port]
    for wanted in (settings.http_port, settings.bulk_port):
        if wanted == 0:
            wanted = _free_port_but([*chosen, *taken])
        elif wanted > 0 and wanted in chosen:
            log.error("port %d is given twice: gRPC, REST and bulk requests need a port each", wanted)
            return None
        chosen.append(wanted)
    # The workers share the ports (SO_REUSEPORT), which would let them share one with another
    # runtime that holds it already, silently: a port in use is refused before any worker binds.
    host = bind_host(settings.server, Authenticator.for_server(settings.server))
    for busy in (p for p in chosen if p >= 0 and not port_is_free(p, host)):
        log.error("port %d is in use; not sharing it with whatever holds it", busy)
        return None
    return chosen[0], chosen[1], chosen[2]


def forks_workers(preloaded: bool) -> bool:
    """Whether the workers are forked from this process, which has the data plane imported and
    runs no thread (the warm runtime's child, inference_svc/warm.py), so that they begin warm;
    otherwise they are spawned, as gRPC must not be forked once it runs."""
    return preloaded and threading.active_count() == 1


def run(settings: RuntimeSettings, preloaded: bool = False) -> int:
    """Starts the workers and supervises them until SIGTERM/SIGINT or a worker dies."""
    import dataclasses

    _remove_orphaned_metrics_dirs()
    metrics_dir = tempfile.mkdtemp(prefix=f"{METRICS_DIR_PREFIX}{os.getpid()}-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir  # inherited by the workers
    metrics_port = -1
    if settings.server.metrics_port >= 0:  # bound before the other ports are picked: never one of them
        metrics_port = _serve_metrics(settings.server.metrics_port, "127.0.0.1")
        log.info("metrics on 127.0.0.1:%d/metrics", metrics_port)
    ports = _pick_ports(settings, taken=[metrics_port])
    if ports is None:
        return 1
    port, http_port, bulk_port = ports
    workers = max(1, settings.workers)
    # The workers' private ports: the bulk worker is the last and gets repository changes too.
    processes_count = workers + (bulk_port >= 0)
    control_ports: list[int] = []
    for _ in range(processes_count if processes_count > 1 else 0):
        control_ports.append(_free_port_but([*ports, metrics_port, *control_ports]))
    context: multiprocessing.context.ForkContext | multiprocessing.context.SpawnContext
    context = multiprocessing.get_context("spawn")
    if forks_workers(preloaded):
        context = multiprocessing.get_context("fork")
        from prometheus_client import values  # which chose its value class when imported, before the above

        values.ValueClass = values.get_value_class()
    long_calls, load = LongCalls(), ReplicaLoad(processes_count)
    processes = []
    for index in range(processes_count):
        bulk = index == workers
        worker_settings = dataclasses.replace(
            settings,
            server=dataclasses.replace(settings.server, port=bulk_port if bulk else port),
            http_port=-1 if bulk else http_port,
            bulk_port=bulk_port,
            control_ports=tuple(control_ports),
            worker_index=index,
            bulk=bulk,
            # the bulk worker's long calls use the cores kept for it, no more
            wide_call_threads=(settings.bulk_cores or settings.wide_call_threads)
            if bulk
            else settings.wide_call_threads,
        )
        process = context.Process(
            target=_worker_main, args=(worker_settings, os.getpid(), long_calls, load), name=f"inference-worker-{index}"
        )
        process.start()
        processes.append(process)
    log.info(
        "runtime on port %d%s%s with %d worker(s)", port, f" (REST {http_port})" if http_port >= 0 else "",
        f", bulk requests on port {bulk_port}" if bulk_port >= 0 else "", workers,
    )  # fmt: skip

    stopping = False

    def on_signal(signum, _frame):
        nonlocal stopping
        stopping = True
        for p in processes:
            if p.is_alive() and p.pid is not None:
                os.kill(p.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    exit_code = 0
    try:
        while any(p.is_alive() for p in processes):
            for p in processes:
                p.join(0.2)
                if not p.is_alive() and not stopping:  # even with 0: its port would go unserved
                    log.error("%s exited with %s; stopping the runtime", p.name, p.exitcode)
                    exit_code = 1
                    on_signal(signal.SIGTERM, None)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)  # the workers' Prometheus files end with them
    return exit_code
