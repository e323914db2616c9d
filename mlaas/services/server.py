"""Start and stop a mesh gRPC server with what every server must have: health checking,
reflection, Prometheus metrics, the auth and service interceptors, and a graceful SIGTERM."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

import grpc
from google.protobuf import descriptor_pool
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry, start_http_server

from mlaas.message_limits import MAX_MESSAGE_BYTES
from mlaas.services.auth import Authenticator
from mlaas.services.interceptors import AuthInterceptor, MetricsInterceptor, RpcMetrics
from mlaas.services.settings import LOOPBACK, ServerSettings
from mlaas.services.stream_slots import StreamSlotInterceptor, StreamSlots
from mlaas.tls import ServerTLS

log = logging.getLogger(__name__)


@dataclass
class Service:
    """One servicer to mount: its generated `add_..._to_server` function and full name."""

    full_name: str
    servicer: object
    add_to_server: Callable[[object, grpc.Server], None]


def bind_host(settings: ServerSettings, authenticator: Authenticator) -> str:
    """Where to listen. Without auth, loopback unless open remote access is allowed; with auth
    beyond loopback, TLS is required (the callers' bearer tokens must not cross the network in
    clear) unless plaintext is allowed."""
    loopback = settings.host in (LOOPBACK, "localhost", "::1")
    if authenticator.enabled and not loopback and settings.tls is None and not settings.allow_plaintext:
        raise ValueError(
            f"refusing to serve bearer tokens in clear on {settings.host}: set MLAAS_TLS_CERT and MLAAS_TLS_KEY, "
            "or MLAAS_ALLOW_PLAINTEXT=true on a network you trust"
        )
    if authenticator.enabled or settings.allow_open_remote or loopback:
        return settings.host
    log.warning(
        "no MLAAS_AUTH_TOKENS_FILE: refusing to listen on %s without authentication, binding %s "
        "(set MLAAS_ALLOW_OPEN_REMOTE=true to override)",
        settings.host,
        LOOPBACK,
    )
    return LOOPBACK


def add_port(server: grpc.Server | grpc.aio.Server, address: str, tls: ServerTLS | None) -> int:
    """Listens on `address` with TLS when `tls` is set; the bound port (0 when it failed)."""
    if tls is None:
        return server.add_insecure_port(address)
    return server.add_secure_port(address, tls.credentials())


def tls_mode(tls: ServerTLS | None) -> str:
    if tls is None:
        return "plaintext"
    return "mTLS: client certificates required" if tls.mutual else "TLS"


def _options(
    share_port: bool = False, max_receive_bytes: int = MAX_MESSAGE_BYTES, connection_seconds: float | None = None
) -> list[tuple[str, int]]:
    """`connection_seconds`: how long a connection lives (then as long again for its calls to
    end), so that no client holds the server's calls for longer."""
    age = [] if connection_seconds is None else [
        ("grpc.max_connection_age_ms", int(connection_seconds * 1000)),
        ("grpc.max_connection_age_grace_ms", int(connection_seconds * 1000)),
    ]  # fmt: skip
    return [
        ("grpc.max_receive_message_length", max_receive_bytes),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.so_reuseport", 1 if share_port else 0),
        *age,
    ]


def _mount(server: grpc.Server | grpc.aio.Server, services: Sequence[Service], health_servicer) -> list[str]:
    """The services, health checking and reflection on `server`; the services' full names."""
    for service in services:
        service.add_to_server(service.servicer, server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [s.full_name for s in services]
    reflection.enable_server_reflection(
        [*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME], server
    )
    return names


def _streaming_kinds(services: Sequence[Service]) -> int:
    """How many streaming rpcs a server with `services` serves (health's Watch and reflection's
    one included)."""
    pool = descriptor_pool.Default()
    methods = [m for s in services for m in pool.FindServiceByName(s.full_name).methods]
    return 2 + sum(m.client_streaming or m.server_streaming for m in methods)


def _listen(
    server: grpc.Server | grpc.aio.Server, name: str, settings: ServerSettings, authenticator: Authenticator
) -> tuple[str, int]:
    """(host, port) the server listens on, by the bind rules; OSError when it cannot."""
    host = bind_host(settings, authenticator)
    port = add_port(server, f"{host}:{settings.port}", settings.tls)
    if port == 0:
        raise OSError(f"{name}: cannot listen on {host}:{settings.port}")
    return host, port


class _Served:
    """What both kinds of mesh server are made of: a name, the settings it listens by, the
    services it mounts and who may call them (the port is known once it listens)."""

    def __init__(self, name: str, settings: ServerSettings, services: Sequence[Service], authenticator: Authenticator):
        self.name = name
        self.settings = settings
        self._authenticator = authenticator
        self._services = list(services)
        self.port = 0


class MeshServer(_Served):
    def __init__(
        self,
        name: str,
        settings: ServerSettings,
        services: Sequence[Service],
        authenticator: Authenticator,
        metrics_registry: CollectorRegistry | None = None,
    ):
        super().__init__(name, settings, services, authenticator)
        self.metrics_registry = metrics_registry or CollectorRegistry()
        self._health = health.HealthServicer(experimental_non_blocking=True)
        self._server: grpc.Server | None = None
        self._metrics_http: WSGIServer | None = None
        self._stopped = threading.Event()
        self.streams = StreamSlots(
            authenticator, settings.max_streams, settings.max_streams_per_caller, settings.reserved_streams
        )
        self.metrics_port = -1

    def start(self) -> MeshServer:
        server = grpc.server(
            futures.ThreadPoolExecutor(
                max_workers=self.settings.max_workers + self.streams.threads(_streaming_kinds(self._services)),
                thread_name_prefix=self.name,
            ),
            interceptors=[
                AuthInterceptor(self._authenticator),
                StreamSlotInterceptor(
                    self.streams, self.settings.stream_idle_seconds, self.settings.stream_max_seconds
                ),
                MetricsInterceptor(RpcMetrics(self.metrics_registry, self.name)),
            ],
            options=_options(),
        )
        names = _mount(server, self._services, self._health)
        host, self.port = _listen(server, self.name, self.settings, self._authenticator)
        server.start()
        self._server = server
        for full_name in ["", *names]:
            self._health.set(full_name, health_pb2.HealthCheckResponse.SERVING)
        if self.settings.metrics_port >= 0:
            self._metrics_http, _ = start_http_server(
                self.settings.metrics_port, addr=host, registry=self.metrics_registry
            )
            self.metrics_port = self._metrics_http.server_address[1]
        log.info(
            "%s listening on %s:%d (metrics on %d, auth %s, %s)",
            self.name,
            host,
            self.port,
            self.metrics_port,
            "on" if self._authenticator.enabled else "OFF: open to every local caller",
            tls_mode(self.settings.tls),
        )
        return self

    def stop(self, grace: float | None = None) -> None:
        """Stops taking new calls, lets in-flight calls finish within the grace period."""
        if self._server is None or self._stopped.is_set():
            return
        self._health.enter_graceful_shutdown()
        self._server.stop(self.settings.shutdown_grace_seconds if grace is None else grace).wait()
        if self._metrics_http is not None:
            self._metrics_http.shutdown()
        self._stopped.set()
        log.info("%s stopped", self.name)

    @property
    def stopped(self) -> threading.Event:
        """Set once the server stopped: background rounds of the service end with it."""
        return self._stopped

    def wait(self) -> None:
        self._stopped.wait()

    def serve_until_signalled(self) -> None:
        """Blocks until SIGTERM or SIGINT, then stops gracefully."""

        def on_signal(signum, _frame):
            log.info("%s: %s received, draining", self.name, signal.Signals(signum).name)
            threading.Thread(target=self.stop, daemon=True).start()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        self.wait()


class AioMeshServer(_Served):
    """The asyncio twin of MeshServer, for servers whose handlers are coroutines (the inference
    runtime): the same health checking, reflection, message limits, TLS, bind rules and graceful
    drain. Metrics and stream limits stay with the server that uses it (the runtime's workers
    sum their metrics in their parent process, and an asyncio server holds no thread per call)."""

    def __init__(
        self,
        name: str,
        settings: ServerSettings,
        services: Sequence[Service],
        authenticator: Authenticator,
        interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
        share_port: bool = False,
        max_receive_bytes: int = MAX_MESSAGE_BYTES,
        max_concurrent_rpcs: int | None = None,
        connection_seconds: float | None = None,
    ):
        super().__init__(name, settings, services, authenticator)
        self._interceptors = list(interceptors)
        self._share_port = share_port  # worker processes of one server listen on one port
        self._max_receive_bytes = max_receive_bytes
        # Beyond, a call is refused (RESOURCE_EXHAUSTED) as it starts, before its message is read.
        self._max_concurrent_rpcs = max_concurrent_rpcs
        self._connection_seconds = connection_seconds
        self._health = health.aio.HealthServicer()
        self._server: grpc.aio.Server | None = None
        self.host = ""

    async def start(self, loopback_ports: Sequence[int] = ()) -> AioMeshServer:
        """Listens on the settings' port (and plaintext on `loopback_ports`, for processes of
        this host only) and serves; health says SERVING once every service is mounted."""
        server = grpc.aio.server(
            interceptors=self._interceptors,
            options=_options(self._share_port, self._max_receive_bytes, self._connection_seconds),
            maximum_concurrent_rpcs=self._max_concurrent_rpcs,
        )
        names = _mount(server, self._services, self._health)
        self.host, self.port = _listen(server, self.name, self.settings, self._authenticator)
        for port in loopback_ports:
            server.add_insecure_port(f"{LOOPBACK}:{port}")
        await server.start()
        self._server = server
        for full_name in ["", *names]:
            await self._health.set(full_name, health_pb2.HealthCheckResponse.SERVING)
        return self

    async def stop(self, grace: float | None = None) -> None:
        """Health says NOT_SERVING, new calls are refused, calls in flight get the grace period."""
        if self._server is None:
            return
        await self._health.enter_graceful_shutdown()
        await self._server.stop(self.settings.shutdown_grace_seconds if grace is None else grace)
        self._server = None
