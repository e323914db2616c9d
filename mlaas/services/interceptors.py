"""Server interceptors shared by the synchronous mesh servers: authentication and per-rpc
Prometheus metrics."""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram

from mlaas.errors import MlaasError
from mlaas.services import permissions
from mlaas.services.auth import Authenticator

# (behaviour, is-response-streaming) -> wrapped behaviour
BehaviourWrapper = Callable[[Callable, bool], Callable]


def wrap_handler(handler: grpc.RpcMethodHandler | None, wrap: BehaviourWrapper):
    """The same handler with its behaviour function passed through `wrap`."""
    if handler is None:
        return None
    for kind, factory in (
        ("unary_unary", grpc.unary_unary_rpc_method_handler),
        ("unary_stream", grpc.unary_stream_rpc_method_handler),
        ("stream_unary", grpc.stream_unary_rpc_method_handler),
        ("stream_stream", grpc.stream_stream_rpc_method_handler),
    ):
        behaviour = getattr(handler, kind)
        if behaviour is not None:
            return factory(
                wrap(behaviour, kind.endswith("_stream")),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
    return handler


def refusal(authenticator: Authenticator, handler_call_details) -> tuple[grpc.StatusCode, str] | None:
    """Why this call must be refused (UNAUTHENTICATED: who is it; PERMISSION_DENIED: the rules of
    mlaas.services.permissions), or None to let it through."""
    method = handler_call_details.method
    if not authenticator.enabled or authenticator.is_public(method):
        return None
    try:
        identity = authenticator.identity(handler_call_details.invocation_metadata)
    except MlaasError as err:
        return grpc.StatusCode.UNAUTHENTICATED, err.message
    denied = permissions.refusal(method, identity)
    return None if denied is None else (grpc.StatusCode.PERMISSION_DENIED, denied)


class AuthInterceptor(grpc.ServerInterceptor):
    """Refuses every rpc but health checks without a valid bearer token, and every rpc its
    caller's role may not call."""

    def __init__(self, authenticator: Authenticator):
        self._auth = authenticator

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        refused = refusal(self._auth, handler_call_details)
        if refused is None:
            return handler

        def refuse(behaviour, streaming):
            def abort(request, context):
                context.abort(*refused)

            return abort

        return wrap_handler(handler, refuse)


class StreamLimits:
    """On a synchronous server every open stream holds one of its worker threads until it ends:
    at most `total` streams at once, and `per_caller` for one caller (a tenant, or a minted
    credential's scope), so that idle watches or slow uploads of one caller can never take the
    threads that other callers' unary calls and health checks need."""

    def __init__(self, authenticator: Authenticator, total: int, per_caller: int):
        self._auth = authenticator
        self._total, self._per_caller = total, per_caller
        self._open: collections.Counter[tuple[str, str]] = collections.Counter()
        self._lock = threading.Lock()

    def caller(self, metadata) -> tuple[str, str]:
        try:
            identity = self._auth.identity(metadata)
        except MlaasError:
            return ("", "")  # refused by the auth interceptor before it runs
        return identity.tenant, identity.scope

    def acquire(self, caller: tuple[str, str]) -> str | None:
        """None, and the stream counts; or why it may not open now (RESOURCE_EXHAUSTED)."""
        with self._lock:
            if self._open.total() >= self._total:
                return f"the server has {self._total} streams open, its limit (MLAAS_MAX_STREAMS); retry later"
            if self._auth.enabled and self._open[caller] >= self._per_caller:
                return (
                    f"you have {self._per_caller} streams open here, the limit per caller "
                    "(MLAAS_MAX_STREAMS_PER_CALLER); close one first"
                )
            self._open[caller] += 1
            return None

    def open(self) -> int:
        with self._lock:
            return self._open.total()

    def release(self, caller: tuple[str, str]) -> None:
        with self._lock:
            self._open[caller] -= 1
            if self._open[caller] <= 0:
                del self._open[caller]


class StreamLimitInterceptor(grpc.ServerInterceptor):
    def __init__(self, limits: StreamLimits):
        self._limits = limits

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None or not (handler.request_streaming or handler.response_streaming):
            return handler
        limits = self._limits
        caller = limits.caller(handler_call_details.invocation_metadata)

        def wrap(behaviour, streaming):
            if streaming:

                def limited_stream(request, context):
                    refused = limits.acquire(caller)
                    if refused is not None:
                        context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, refused)
                    try:
                        yield from behaviour(request, context)
                    finally:
                        limits.release(caller)

                return limited_stream

            def limited_upload(request_iterator, context):
                refused = limits.acquire(caller)
                if refused is not None:
                    context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, refused)
                try:
                    return behaviour(request_iterator, context)
                finally:
                    limits.release(caller)

            return limited_upload

        return wrap_handler(handler, wrap)


class RpcMetrics:
    def __init__(self, registry: CollectorRegistry, service: str):
        self.requests = Counter(
            "mlaas_grpc_requests",
            "Finished rpcs by method and status code",
            ["service", "method", "code"],
            registry=registry,
        )
        self.latency = Histogram(
            "mlaas_grpc_request_seconds",
            "Rpc handling time by method",
            ["service", "method"],
            registry=registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.service = service


class MetricsInterceptor(grpc.ServerInterceptor):
    """Counts finished rpcs by status code and times them."""

    def __init__(self, metrics: RpcMetrics):
        self._metrics = metrics

    def intercept_service(self, continuation, handler_call_details):
        method = handler_call_details.method.rsplit("/", 1)[-1]
        metrics = self._metrics

        def observe(context, started, failed: bool):
            code = context.code() if hasattr(context, "code") else None
            if code is None:
                code = grpc.StatusCode.UNKNOWN if failed else grpc.StatusCode.OK
            metrics.requests.labels(metrics.service, method, code.name).inc()
            metrics.latency.labels(metrics.service, method).observe(time.perf_counter() - started)

        def wrap(behaviour, streaming):
            if streaming:

                def run_stream(request, context):
                    started, failed = time.perf_counter(), True
                    try:
                        yield from behaviour(request, context)
                        failed = False
                    finally:
                        observe(context, started, failed)

                return run_stream

            def run_unary(request, context):
                started, failed = time.perf_counter(), True
                try:
                    response = behaviour(request, context)
                    failed = False
                    return response
                finally:
                    observe(context, started, failed)

            return run_unary

        return wrap_handler(continuation(handler_call_details), wrap)


class AioAuthInterceptor(grpc.aio.ServerInterceptor):
    """AuthInterceptor for grpc.aio servers."""

    def __init__(self, authenticator: Authenticator):
        self._auth = authenticator

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        refused = refusal(self._auth, handler_call_details)
        if refused is None:
            return handler

        def refuse(behaviour, streaming):
            async def abort(request, context):
                await context.abort(*refused)

            return abort

        return wrap_handler(handler, refuse)
