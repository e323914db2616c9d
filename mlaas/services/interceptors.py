"""Server interceptors shared by the synchronous mesh servers: authentication and per-rpc
Prometheus metrics (open streams: stream_slots.py)."""

from __future__ import annotations

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
