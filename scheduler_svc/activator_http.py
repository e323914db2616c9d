"""The activator over HTTP (MLAAS_ACTIVATOR_HTTP_PORT), for curl and tritonclient.http: what
activator.py does for gRPC clients. A request names its deployment in the header
`mlaas-deployment`, its caller is checked and given a slot by the same Router, it is held while
the deployment wakes from zero, and it then goes on as it came (method, path, headers, body) to
one of the deployment's ready replicas' REST endpoints; the replica's answer comes back as it
gave it. The activator's own refusals are JSON `{"error": ...}` with the gRPC status as an HTTP
one, as the runtimes answer theirs.

A body is read only once the caller holds a slot, within `body_seconds`, and up to the size the
replicas' REST endpoints take, and the slot is held until the answer (at most MAX_ANSWER_BYTES)
is written, within `body_seconds` too: slow, large or unread bodies hold no more than the slots
allow.
"""

from __future__ import annotations

import asyncio
import http.client
import logging
import ssl
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

import grpc
import orjson

from mlaas.errors import DeadlineExceeded, MlaasError, Unavailable
from mlaas.message_limits import BULK_THRESHOLD_BYTES
from mlaas.services.http_server import HTTP_STATUS, HttpServer
from mlaas.tls import ClientTLS, ServerTLS
from scheduler_svc.activator import MAX_ANSWER_BYTES, Router, advertised

log = logging.getLogger(__name__)
# Headers of one hop (RFC 9110 7.6.1), and those the forwarded message gets anew.
_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection", "te", "trailer",
    "transfer-encoding", "upgrade", "host", "content-length",
}  # fmt: skip
# What the activator's own server writes into every answer.
_SERVER_WRITES = {"date", "server"}
_CHUNK_BYTES = 64 * 2**10
# How long a replica may take to answer a forwarded request.
FORWARD_SECONDS = 300.0

Scope = dict
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


class TooLarge(MlaasError):
    code = grpc.StatusCode.INVALID_ARGUMENT


async def _body(receive: Receive, limit: int) -> bytes:
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Unavailable("the client went away")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"the request body is over {limit // 2**20} MiB, more than a replica's REST endpoint takes")
        chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks)


def _refusal(err: MlaasError) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    status = 413 if isinstance(err, TooLarge) else HTTP_STATUS.get(err.code, 500)
    return status, [(b"content-type", b"application/json")], orjson.dumps({"error": err.message})


async def _reply(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    """The answer, in chunks: the server waits for the client to take what it has before each
    write, so an answer nobody reads stays here, within its caller's slot, not in the
    connection's buffer; this returns once the client has taken (nearly) all of it."""
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    for start in range(0, len(body), _CHUNK_BYTES):
        await send({"type": "http.response.body", "body": body[start : start + _CHUNK_BYTES], "more_body": True})
    await send({"type": "http.response.body", "body": b""})


class HttpActivator:
    """The ASGI application."""

    def __init__(self, router: Router, threads: int, client_tls: ClientTLS | None, body_seconds: float = 60.0):
        self._router = router
        # Admission and activation block (Redis): they run here, never on the event loop.
        self._threads = ThreadPoolExecutor(threads, thread_name_prefix="http-activator")
        self._ssl: ssl.SSLContext | None = client_tls.ssl_context() if client_tls else None
        self._body_seconds = body_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        loop = asyncio.get_running_loop()
        headers = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in scope["headers"]]
        try:
            tenant, deployment_id = await loop.run_in_executor(self._threads, self._router.admit, headers)
        except MlaasError as err:
            await _reply(send, *_refusal(err))
            return
        try:  # the slot is held until the answer is written: an unread one holds its caller's slot
            try:
                try:
                    body = await asyncio.wait_for(_body(receive, BULK_THRESHOLD_BYTES), self._body_seconds)
                except TimeoutError:
                    raise DeadlineExceeded(f"the request body did not arrive within {self._body_seconds:g} s") from None
                answer = await loop.run_in_executor(
                    self._threads, self._forward, tenant, deployment_id, scope, headers, body
                )
            except MlaasError as err:
                answer = _refusal(err)
            try:
                await asyncio.wait_for(_reply(send, *answer), self._body_seconds)
            except TimeoutError:  # the client reads nothing: its connection goes
                log.info("an activator answer was not read within %g s", self._body_seconds)
        finally:
            self._router.release(tenant)

    def _forward(
        self, tenant: str, deployment_id: str, scope: Scope, headers: list[tuple[str, str]], body: bytes
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """The replica's answer (status, headers, body) to the request as it came."""
        deployment = self._router.serving(tenant, deployment_id, None)
        if not deployment.http_endpoints:
            raise Unavailable(f"deployment {deployment_id}'s replicas serve no REST endpoint")
        endpoint = self._router.pick(deployment.http_endpoints)
        host, port = endpoint.rsplit(":", 1)
        if self._ssl is None:
            connection = http.client.HTTPConnection(host, int(port), timeout=FORWARD_SECONDS)
        else:
            connection = http.client.HTTPSConnection(host, int(port), timeout=FORWARD_SECONDS, context=self._ssl)
        target = scope["raw_path"].decode("latin-1") or "/"
        if scope["query_string"]:
            target += "?" + scope["query_string"].decode("latin-1")
        try:
            connection.putrequest(scope["method"], target, skip_host=True, skip_accept_encoding=True)
            connection.putheader("host", endpoint)
            for name, value in headers:
                if name not in _HOP:
                    connection.putheader(name, value)
            connection.putheader("content-length", str(len(body)))
            connection.endheaders(body)
            response = connection.getresponse()
            reply = response.read(MAX_ANSWER_BYTES + 1)
            if len(reply) > MAX_ANSWER_BYTES:
                raise Unavailable(
                    f"the replica's answer is over {MAX_ANSWER_BYTES // 2**20} MiB, more than the activator passes on"
                )
            kept = [
                (k.lower().encode(), v.encode("latin-1"))
                for k, v in response.getheaders()
                if k.lower() not in _HOP | _SERVER_WRITES
            ]
            return response.status, kept, reply
        except (OSError, http.client.HTTPException) as err:
            raise Unavailable(f"replica {endpoint} did not answer: {err}") from None
        finally:
            connection.close()

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)


class HttpActivatorServer:
    """The HTTP activator on its own port, on an event loop of its own thread."""

    def __init__(self, app: HttpActivator, host: str, port: int, server_tls: ServerTLS | None, grace: float):
        self._app = app
        self._server = HttpServer(app, host, port, server_tls, share_port=False, grace=grace, header_seconds=30.0)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="http-activator-loop", daemon=True)
        self._thread.start()
        # Bound now, as the gRPC side is: the scheduler publishes the address before it serves.
        asyncio.run_coroutine_threadsafe(self._server.start(), self._loop).result(timeout=30)
        self.host, self.port = host, self._server.port

    @property
    def endpoint(self) -> str:
        return advertised(self.host, self.port)

    def stop(self) -> None:
        """Lets the requests in flight finish within the grace; a second stop does nothing."""
        if not self._loop.is_running():
            return
        asyncio.run_coroutine_threadsafe(self._server.stop(), self._loop).result(timeout=60)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._app.close()
