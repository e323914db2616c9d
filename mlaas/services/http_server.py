"""An HTTP/1.1 server for an ASGI application, with what uvicorn lacks against slow, idle or
greedy clients: a cap on open connections, a deadline and a size limit for each request's
headers; and the HTTP status that stands for each gRPC one. The runtime's REST endpoint and the
scheduler's HTTP activator serve on it.
"""

from __future__ import annotations

import asyncio
import resource
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import grpc
import orjson

from mlaas.tls import ServerTLS

if TYPE_CHECKING:
    import uvicorn

# A gRPC status as the HTTP one its REST twin answers (any other: 500).
HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.FAILED_PRECONDITION: 400, grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401, grpc.StatusCode.PERMISSION_DENIED: 403, grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409, grpc.StatusCode.ABORTED: 409, grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNIMPLEMENTED: 501, grpc.StatusCode.UNAVAILABLE: 503, grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}  # fmt: skip


def ssl_context(tls: ServerTLS) -> ssl.SSLContext:
    """The gRPC side's certificate, and its client CA for mTLS (read once, at start)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(tls.cert_file, tls.key_file)
    if tls.client_ca_file:
        context.load_verify_locations(tls.client_ca_file)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def _max_connections() -> int:
    """Open REST connections a worker keeps: half its file descriptors (gRPC, models and logs
    need the rest), at most 10,000. Beyond, new ones are closed at once, so the worker never
    runs out of descriptors (it would then fail every accept in a busy loop)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(16, min(10_000, soft // 2))


# A request's line and headers (uvicorn keeps whatever a client sends: 4 connections of 100 MiB
# of headers took 400 MB), beyond which the answer is 431 and the connection closes.
MAX_HEADER_BYTES = 64 * 2**10
_TOO_LARGE_BODY = orjson.dumps({"error": f"the request headers are more than {MAX_HEADER_BYTES // 1024} KiB"})
_HEADERS_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\nconnection: close\r\n"
    b"content-length: %d\r\n\r\n%s" % (len(_TOO_LARGE_BODY), _TOO_LARGE_BODY)
)


def _guarded(protocol_class, max_connections: int, header_seconds: float):
    """uvicorn's HTTP protocol with what it lacks against slow or idle clients: a cap on open
    connections, a deadline for each request's headers (uvicorn times out only the idle time
    after a response, so a connection that never sends a whole request was kept forever) and a
    limit on their size."""

    class Guarded(protocol_class):
        _deadline: asyncio.TimerHandle | None = None
        _header_bytes = 0

        def data_received(self, data: bytes) -> None:
            reading_headers = self._deadline is not None
            super().data_received(data)
            if reading_headers and self._deadline is not None:  # and they are still not whole
                self._header_bytes += len(data)
                if self._header_bytes > MAX_HEADER_BYTES and not self.transport.is_closing():
                    self.transport.write(_HEADERS_TOO_LARGE)
                    self.transport.close()

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            if len(self.connections) > max_connections:
                transport.close()
                return
            self._await_headers()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._await_headers()

        def on_headers_complete(self) -> None:
            self._stop_waiting()
            super().on_headers_complete()

        def connection_lost(self, exc) -> None:
            self._stop_waiting()
            super().connection_lost(exc)

        def _await_headers(self) -> None:
            self._stop_waiting()
            self._header_bytes = 0
            self._deadline = asyncio.get_running_loop().call_later(header_seconds, self.timeout_keep_alive_handler)

        def _stop_waiting(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

    return Guarded


class HttpServer:
    """uvicorn serving an ASGI app on (host, port) in the running event loop; with `share_port`
    several processes listen on one port (SO_REUSEPORT), as the runtime's workers do."""

    def __init__(
        self,
        app: Callable[..., Awaitable[None]],
        host: str,
        port: int,
        tls: ServerTLS | None,
        share_port: bool,
        grace: float,
        header_seconds: float,
    ):
        self._app = app
        self._host, self._port = host, port
        self._tls = tls
        self._share_port = share_port
        self._grace = grace
        self._header_seconds = header_seconds
        self._server: uvicorn.Server | None = None
        self._ticks: asyncio.Future | None = None
        self.port = 0

    async def start(self) -> None:
        import uvicorn

        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        # IPPROTO_TCP named: asyncio sets TCP_NODELAY only on sockets that say so, and without it
        # a response written as headers then body waits ~40 ms for the client's delayed ACK.
        listener = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self._share_port:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        listener.bind((self._host, self._port))
        listener.set_inheritable(False)
        self.port = listener.getsockname()[1]
        config = uvicorn.Config(
            self._app, http="httptools", ws="none", lifespan="off", log_level="warning", access_log=False,
            # typed int by uvicorn, which only hands it to asyncio.wait_for (seconds, float)
            timeout_graceful_shutdown=self._grace,  # type: ignore[arg-type]
            server_header=False,
        )  # fmt: skip
        config.load()
        config.http_protocol_class = _guarded(config.http_protocol_class, _max_connections(), self._header_seconds)
        if self._tls is not None:
            config.ssl = ssl_context(self._tls)
        # What uvicorn.Server.serve does, without the signal handlers it installs: the worker
        # handles SIGTERM itself (server.py) and stops this server with the gRPC one.
        server = uvicorn.Server(config)
        server.lifespan = config.lifespan_class(config)
        await server.startup(sockets=[listener])
        self._ticks = asyncio.ensure_future(server.main_loop())  # the Date header, once a second
        self._server = server

    async def stop(self) -> None:
        """Stops listening, lets requests in flight finish within the grace period."""
        if self._server is not None:
            self._server.should_exit = True
            assert self._ticks is not None, "started with the server"
            await self._ticks
            await self._server.shutdown()
            self._server = None
