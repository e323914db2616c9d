"""The activator: one gRPC address (MLAAS_ACTIVATOR_PORT) through which any gRPC client
(tritonclient, grpcurl, a generated stub) reaches a deployment's replicas, naming it in the
metadata `mlaas-deployment: ID`, as KServe routes by host name. It serves what the runtimes
serve (the Open Inference Protocol, a STRICT node's labels) and forwards each call, as bytes, to
one of the deployment's ready replicas, round robin. A deployment that scaled to zero is woken
first (activation.py) and the call held until a replica serves, within its deadline, so the first
request after an idle spell is answered, not refused.

The caller is checked as ActivateDeployment's would be (a valid token, a tenant that may use the
deployment), and the call then goes on with the caller's own metadata: the runtime checks its
token again. Held calls hold threads, so they are bounded: a caller takes a slot before any
wait, `calls` at once in all and at most `calls_per_caller` of one tenant's, so one tenant's
burst cannot hold everyone else's out; beyond, RESOURCE_EXHAUSTED at once. It answers gRPC
health checks, as every mesh server does.
"""

from __future__ import annotations

import itertools
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent import futures
from contextlib import contextmanager
from typing import NoReturn

import grpc
from google.protobuf import descriptor_pool
from grpc_health.v1 import health, health_pb2_grpc

from mlaas import tls
from mlaas.errors import InvalidArgument, MlaasError, PermissionDenied
from mlaas.message_limits import BULK_THRESHOLD_BYTES
from mlaas.oip import open_inference_v2_pb2 as oip
from mlaas.services import permissions
from mlaas.services.auth import Authenticator
from mlaas.services.server import add_port
from mlaas.tls import ServerTLS
from mlaas.v1 import node_pb2, scheduler_pb2
from scheduler_svc.activation import Activation, CallSlots

log = logging.getLogger(__name__)
ROUTE_KEY = "mlaas-deployment"
ACTIVATE = "/" + scheduler_pb2.DESCRIPTOR.services_by_name["SchedulerService"].full_name + "/ActivateDeployment"
FORWARDED_SERVICES = (
    oip.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name,
    node_pb2.DESCRIPTOR.services_by_name["NodeLabelsService"].full_name,
)
# Call metadata that belongs to one hop of HTTP/2, not to the call.
_HOP_KEYS = {"user-agent", "te", "content-type", "host"}
_IDLE = 60.0  # seconds a channel to a replica stays open unused
# The largest answer the activator passes on (a held call holds its answer until the caller
# reads it: slots x this bounds the memory); requests are held to what the replicas' ports take.
MAX_ANSWER_BYTES = 16 * 2**20
_UPSTREAM = [
    ("grpc.max_receive_message_length", MAX_ANSWER_BYTES),
    ("grpc.max_send_message_length", BULK_THRESHOLD_BYTES),
]


def _passed_on(context: grpc.ServicerContext) -> list[tuple[str, str | bytes]]:
    """The caller's metadata, to go on with its call."""
    return [(k, v) for k, v in context.invocation_metadata() if k not in _HOP_KEYS and not k.startswith((":", "grpc-"))]


def _remaining(context: grpc.ServicerContext) -> float | None:
    """The caller's deadline, as a timeout for the call forwarded (None: it set none, which
    grpc tells as some 10^18 seconds)."""
    remaining = context.time_remaining()
    return None if remaining is None or remaining > 1e9 else remaining


def _abort(context: grpc.ServicerContext, err: grpc.RpcError | MlaasError) -> NoReturn:
    """Ends the call with the error's status (grpc's abort raises)."""
    code, details = (err.code, err.message) if isinstance(err, MlaasError) else (err.code(), err.details())
    context.abort(code, details or "")
    raise AssertionError("context.abort returned")


def advertised(host: str, port: int) -> str:
    """Where clients reach a server on (host, port): this machine's name when it listens on
    every interface."""
    return f"{socket.gethostname() if host in ('0.0.0.0', '::', '[::]') else host}:{port}"


class _Replicas:
    """Channels to the replicas, one per endpoint, each closed once no call has used it for a
    minute (a channel is never closed under a call, however long its stream)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._channels: dict[str, tuple[grpc.Channel, int, float]] = {}  # endpoint -> (channel, calls, last used)

    @contextmanager
    def channel(self, endpoint: str) -> Iterator[grpc.Channel]:
        with self._lock:
            now = time.monotonic()
            for idle in [e for e, (_, calls, used) in self._channels.items() if not calls and now - used > _IDLE]:
                self._channels.pop(idle)[0].close()
            channel, calls, _ = self._channels.get(endpoint) or (tls.channel(endpoint, _UPSTREAM), 0, now)
            self._channels[endpoint] = channel, calls + 1, now
        try:
            yield channel
        finally:
            with self._lock:
                channel, calls, _ = self._channels[endpoint]
                self._channels[endpoint] = channel, calls - 1, time.monotonic()

    def close(self) -> None:
        with self._lock:
            for channel, _, _ in self._channels.values():
                channel.close()
            self._channels.clear()


class _AfterBoth:
    """Calls `action` at its second call, whichever two events they are."""

    def __init__(self, action: Callable[[], None]):
        self._action = action
        self._calls = 0
        self._lock = threading.Lock()

    def __call__(self) -> None:
        with self._lock:
            self._calls += 1
            last = self._calls == 2
        if last:
            self._action()


class Router:
    """What both activators do before they forward a call: who calls (checked as
    ActivateDeployment checks its caller), which deployment it names, a slot for the call (taken
    before any wait, so waits are bounded too), then the deployment once a replica serves."""

    def __init__(self, activation: Activation, authenticator: Authenticator, slots: CallSlots):
        self.activation = activation
        self._auth = authenticator
        self._slots = slots
        self._turns = itertools.count()

    def admit(self, metadata: Sequence[tuple[str, str | bytes]]) -> tuple[str, str]:
        """(the caller's tenant, the deployment id it names), holding one of the caller's slots
        until `release`."""
        routes = [v for k, v in metadata if k == ROUTE_KEY]
        if len(routes) != 1 or not isinstance(routes[0], str) or not routes[0]:
            raise InvalidArgument(f"name the deployment in the call's metadata: '{ROUTE_KEY}: <deployment id>'")
        if sum(k == "authorization" for k, _ in metadata) > 1:  # the one checked must be the one used
            raise InvalidArgument("send one authorization, not several")
        identity = self._auth.identity(metadata)
        if self._auth.enabled and (denied := permissions.refusal(ACTIVATE, identity)):
            raise PermissionDenied(denied)
        self._slots.take(identity.tenant)
        return identity.tenant, routes[0]

    def release(self, tenant: str) -> None:
        self._slots.give_back(tenant)

    def serving(
        self, tenant: str, deployment_id: str, timeout: float | None, wanted: Callable[[], bool] = lambda: True
    ) -> scheduler_pb2.Deployment:
        """The deployment once a replica of it serves (woken from zero if need be); the wait
        ends early once the caller no longer `wanted` it (it went away)."""
        return self.activation.activate(deployment_id, tenant, timeout, wanted)

    def pick(self, endpoints: Sequence[str], not_this: str = "") -> str:
        """One of them, round robin; another than `not_this` (a replica that just failed) if
        there is another."""
        others = [e for e in endpoints if e != not_this] or list(endpoints)
        return others[next(self._turns) % len(others)]


class Activator(grpc.GenericRpcHandler):
    def __init__(self, router: Router):
        self._router = router
        self._replicas = _Replicas()
        pool = descriptor_pool.Default()
        self._methods = {
            f"/{service}/{method.name}": (method.client_streaming, method.server_streaming)
            for service in FORWARDED_SERVICES
            for method in pool.FindServiceByName(service).methods
        }

    def service(self, handler_call_details):
        streaming = self._methods.get(handler_call_details.method)
        if streaming is None:
            return None  # not a runtime's rpc: health checks, or UNIMPLEMENTED
        method, (client_streaming, server_streaming) = handler_call_details.method, streaming
        kind = f"{'stream' if client_streaming else 'unary'}_{'stream' if server_streaming else 'unary'}"

        def call(channel: grpc.Channel):
            return getattr(channel, kind)(method)  # bytes in, bytes out

        forward = self._stream if server_streaming else self._call
        replayable = not client_streaming
        return getattr(grpc, f"{kind}_rpc_method_handler")(
            lambda request, context: forward(call, request, context, replayable)
        )

    @contextmanager
    def _admitted(self, context: grpc.ServicerContext) -> Iterator[tuple[str, str]]:
        """(the caller's tenant, the deployment id it names) while it holds one of its slots;
        whatever fails ends the call with its status."""
        try:
            tenant, deployment_id = self._router.admit(context.invocation_metadata())
            # Held until the call has ended (its answer sent: a client that reads nothing holds
            # its own slots, not the scheduler's memory) and its handler returned (a cancelled
            # call's thread is still held until then).
            release = _AfterBoth(lambda: self._router.release(tenant))
            if not context.add_callback(release):
                release()  # it ended already
            try:
                yield tenant, deployment_id
            finally:
                release()
        except (MlaasError, grpc.RpcError) as err:
            _abort(context, err)
        except Exception:
            log.exception("the activator failed a call")
            context.abort(grpc.StatusCode.INTERNAL, "the activator failed this call; see the scheduler's log")

    def _call(self, call: Callable, request, context: grpc.ServicerContext, replayable: bool):
        """One answer from a replica; a replayable request goes once more, to another replica
        if there is one, when the first was leaving or gone (UNAVAILABLE)."""
        with self._admitted(context) as (tenant, deployment_id):
            failed = ""
            for attempt in (1, 2):
                deployment = self._router.serving(tenant, deployment_id, _remaining(context), context.is_active)
                endpoint = self._router.pick(deployment.endpoints, not_this=failed)
                with self._replicas.channel(endpoint) as channel:
                    try:
                        return call(channel)(request, metadata=_passed_on(context), timeout=_remaining(context))
                    except grpc.RpcError as err:
                        if attempt == 2 or not replayable or err.code() != grpc.StatusCode.UNAVAILABLE:
                            raise
                        failed = endpoint

    def _stream(self, call: Callable, request, context: grpc.ServicerContext, replayable: bool) -> Iterator:
        with self._admitted(context) as (tenant, deployment_id):
            deployment = self._router.serving(tenant, deployment_id, _remaining(context), context.is_active)
            with self._replicas.channel(self._router.pick(deployment.endpoints)) as channel:
                responses = call(channel)(request, metadata=_passed_on(context), timeout=_remaining(context))
                context.add_callback(responses.cancel)
                yield from responses

    def close(self) -> None:
        self._replicas.close()


class ActivatorServer:
    """The activator on its own port, beside the scheduler's (same host rules and TLS)."""

    def __init__(self, activator: Activator, host: str, port: int, server_tls: ServerTLS | None, threads: int):
        self.activator = activator
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="activator"),
            handlers=[activator],
            maximum_concurrent_rpcs=threads,  # beyond: RESOURCE_EXHAUSTED at once, never a queue
            options=[
                # The replicas' ports it forwards to take no more (their bulk ports are the SDK's).
                ("grpc.max_receive_message_length", BULK_THRESHOLD_BYTES),
                ("grpc.max_send_message_length", MAX_ANSWER_BYTES),
                ("grpc.max_concurrent_streams", threads),
                ("grpc.so_reuseport", 0),
            ],
        )
        health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), self._server)
        self.port = add_port(self._server, f"{host}:{port}", server_tls)
        if self.port == 0:
            raise OSError(f"activator: cannot listen on {host}:{port}")
        self.host = host

    @property
    def endpoint(self) -> str:
        return advertised(self.host, self.port)

    def start(self) -> None:
        self._server.start()

    def stop(self, grace: float | None) -> None:
        self._server.stop(grace).wait()
        self.activator.close()
