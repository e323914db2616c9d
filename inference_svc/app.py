"""Builds one runtime worker from its settings and injects its parts: the model repository,
the feedback tap and its sink (the Monitor, records or summaries), the data plane, the gRPC
servicer and the gRPC server with its interceptors (auth; on a deployment's runtime, who may
use the deployment), and the REST server under the same rules. server.py runs the worker
processes."""

from __future__ import annotations

import asyncio
import gc
import logging
from dataclasses import dataclass, field

from inference_svc.access import DeploymentAccess, RuntimeAccessInterceptor, RuntimeRules, own_tenant, scheduler_check
from inference_svc.catalog import Catalog
from inference_svc.cores import LongCalls
from inference_svc.credentials import RuntimeCredentials
from inference_svc.dataplane import DataPlane
from inference_svc.feedback import FeedbackSink, FeedbackTap
from inference_svc.limits import TenantCalls
from inference_svc.load import ReplicaLoad
from inference_svc.load_servicer import RuntimeServicer
from inference_svc.metrics import RuntimeMetrics
from inference_svc.monitor_sink import MonitorConnection, MonitorSink
from inference_svc.node_labels import NodeLabels, NodeStore
from inference_svc.node_servicer import NodeLabelsServicer
from inference_svc.repository import ModelRepository
from inference_svc.rest import RestApp
from inference_svc.servicer import InferenceServicer
from inference_svc.settings import RuntimeSettings
from inference_svc.summary_sink import SummarySink
from inference_svc.wire import add_inference_service
from mlaas.oip import open_inference_v2_pb2 as oip
from mlaas.refs import parse_ref
from mlaas.services.auth import SCHEDULER, Authenticator
from mlaas.services.http_server import HttpServer
from mlaas.services.interceptors import AioAuthInterceptor
from mlaas.services.server import AioMeshServer, Service, bind_host, tls_mode
from mlaas.v1 import node_pb2, node_pb2_grpc, runtime_pb2, runtime_pb2_grpc, types_pb2

log = logging.getLogger(__name__)
SERVICE_NAME = oip.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
NODE_LABELS_SERVICE = node_pb2.DESCRIPTOR.services_by_name["NodeLabelsService"].full_name
RUNTIME_SERVICE = runtime_pb2.DESCRIPTOR.services_by_name["RuntimeService"].full_name


@dataclass
class Worker:
    settings: RuntimeSettings
    repository: ModelRepository
    metrics: RuntimeMetrics
    feedback: FeedbackTap
    catalog: Catalog
    servicer: InferenceServicer
    server: AioMeshServer
    rest: HttpServer | None
    node_labels: NodeLabels | None
    monitor: MonitorConnection | None = None
    _background: list[asyncio.Task] = field(default_factory=list)

    async def start(self) -> None:
        """Loads the settings' models, then serves them."""
        for ref in self.settings.models:
            await self.repository.load_ref(ref)
        for name, uri in self.settings.model_uris:
            await self.repository.load_uri(name, uri)
        control = self.settings.control_ports
        # The workers' private port (repository changes repeated to siblings) stays plaintext:
        # it listens on loopback only, so its traffic never leaves this host (or pod), and the
        # mesh's certificate need not name 127.0.0.1. The auth interceptor still guards it; what
        # it does not ask for, under mTLS, is a client certificate from a process of this host.
        await self.server.start(loopback_ports=[control[self.settings.worker_index]] if control else [])
        if self.rest is not None:
            await self.rest.start()
        # What start-up made (modules, sessions) lives as long as the worker: keep it out of the
        # garbage collector's scans, which the request path's allocations otherwise trigger.
        gc.collect()
        gc.freeze()
        self.feedback.start()
        loop = asyncio.get_running_loop()
        self._background = [
            loop.create_task(self.repository.refresh_gauges()),
            loop.create_task(self.metrics.flush_forever()),
        ]
        if self.node_labels is not None and self.monitor is not None:
            self._background.append(loop.create_task(self.node_labels.flush_forever(self.monitor)))
        log.info(
            "%s %d serving %s on %s:%d (%s)%s", "bulk worker" if self.settings.bulk else "worker",
            self.settings.worker_index, [m.name for m in self.repository.all()],
            self.server.host, self.server.port, tls_mode(self.settings.server.tls),
            f", REST on port {self.rest.port}" if self.rest is not None else "",
        )  # fmt: skip

    async def stop(self) -> None:
        """Open streams end (their clients resend elsewhere), calls in flight get the grace
        period, then what the feedback tap holds is sent and the sessions are closed."""
        self.servicer.drain()
        await asyncio.gather(self.server.stop(), *([self.rest.stop()] if self.rest is not None else []))
        for task in self._background:
            task.cancel()
        self.metrics.flush()  # what the last half second observed
        await self.feedback.stop()
        await self.catalog.close()
        await self.repository.close()
        if self.node_labels is not None:
            self.node_labels.close()
        log.info("worker %d stopped", self.settings.worker_index)


def _credentials(settings: RuntimeSettings) -> RuntimeCredentials:
    """The runtime's token, for the version of the model it starts with."""
    version = parse_ref(settings.models[0]).version if settings.models else 0
    return RuntimeCredentials(settings.registry_token, version)


def _monitor(settings: RuntimeSettings, credentials: RuntimeCredentials) -> MonitorConnection | None:
    if not (settings.monitor_address and settings.deployment_id):
        return None
    return MonitorConnection(settings.monitor_address, credentials)


def _node_labels(settings: RuntimeSettings) -> NodeLabels | None:
    """Where a STRICT deployment keeps its predictions and labels on this node (None for an
    OPEN one: its feedback goes to the Monitor)."""
    if settings.feedback_mode != "summaries" or not settings.deployment_id:
        return None
    store = NodeStore(settings.node_dir / f"{settings.deployment_id}.sqlite3", settings.node_keep_predictions)
    model = parse_ref(settings.models[0]) if settings.models else types_pb2.ModelRef()
    return NodeLabels(store, settings.deployment_id, model.name, model.version)


def _sink(
    settings: RuntimeSettings, monitor: MonitorConnection | None, labels: NodeLabels | None
) -> FeedbackSink | None:
    if monitor is None:
        return None
    if labels is not None:
        return SummarySink(monitor, settings.deployment_id, labels)
    return MonitorSink(monitor, settings.deployment_id)


def _rules(settings: RuntimeSettings, authenticator: Authenticator) -> RuntimeRules | None:
    """Who may call what (None without auth): on a deployment's runtime, who may use that
    deployment, as the scheduler says; on a standalone one, every tenant, its operator alone
    changing the repository."""
    if not authenticator.enabled:
        return None
    if not settings.managed:
        return RuntimeRules(authenticator, None, own_tenant(authenticator, settings.registry_token))
    if not settings.scheduler_address:
        raise ValueError("a deployment's runtime under auth needs MLAAS_SCHEDULER_ADDR to check who may use it")
    access = DeploymentAccess(scheduler_check(settings.scheduler_address, settings.deployment_id))
    return RuntimeRules(authenticator, access, SCHEDULER)


def build_worker(
    settings: RuntimeSettings, long_calls: LongCalls | None = None, load: ReplicaLoad | None = None
) -> Worker:
    """One worker; `long_calls` (cores.py) and `load` (load.py) are shared by the runtime's workers."""
    load = load or ReplicaLoad()
    authenticator = Authenticator.for_server(settings.server)
    metrics = RuntimeMetrics()
    credentials = _credentials(settings)
    repository = ModelRepository(settings, metrics, long_calls, credentials)
    monitor, node_labels = _monitor(settings, credentials), _node_labels(settings)
    sink = _sink(settings, monitor, node_labels)
    feedback = FeedbackTap(
        settings.feedback_capacity, sink, dropped_metric=metrics.feedback_dropped,
        budget_bytes=settings.feedback_budget_bytes,
    )  # fmt: skip
    siblings = [f"127.0.0.1:{p}" for i, p in enumerate(settings.control_ports) if i != settings.worker_index]
    catalog = Catalog(settings, repository, siblings, credentials, node_labels)
    plane = DataPlane(settings, repository, feedback, metrics, load.worker(settings.worker_index))
    rules = _rules(settings, authenticator)
    interceptors = [] if rules is None else [AioAuthInterceptor(authenticator), RuntimeAccessInterceptor(rules)]
    if rules is not None and settings.bulk:  # no tenant holds all of the bulk worker's few calls
        share = max(1, settings.bulk_concurrency // 2)
        interceptors.append(TenantCalls(authenticator, share, settings.server.stream_idle_seconds))
    servicer = InferenceServicer(catalog, plane)
    service = Service(SERVICE_NAME, servicer, add_inference_service)
    labels_service = Service(
        NODE_LABELS_SERVICE, NodeLabelsServicer(node_labels, monitor),
        node_pb2_grpc.add_NodeLabelsServiceServicer_to_server,
    )  # fmt: skip
    load_service = Service(
        RUNTIME_SERVICE, RuntimeServicer(load), runtime_pb2_grpc.add_RuntimeServiceServicer_to_server
    )
    server = AioMeshServer(
        "inference", settings.server, [service, labels_service, load_service], authenticator, interceptors,
        share_port=not settings.bulk, max_receive_bytes=settings.max_request_bytes,
        max_concurrent_rpcs=settings.bulk_concurrency if settings.bulk else None,
        connection_seconds=settings.bulk_connection_seconds if settings.bulk else None,
    )  # fmt: skip
    rest = None
    if settings.http_port >= 0:
        rest = HttpServer(
            RestApp(settings, catalog, plane, rules), bind_host(settings.server, authenticator), settings.http_port,
            settings.server.tls, share_port=True, grace=settings.server.shutdown_grace_seconds,
            header_seconds=settings.rest_header_seconds,
        )  # fmt: skip
    return Worker(settings, repository, metrics, feedback, catalog, servicer, server, rest, node_labels, monitor)
