"""Each tenant's share of a runtime worker: how many of its requests, and how many rows, may be
in flight at once. Without it one tenant's burst fills the model's queue (MLAAS_MAX_QUEUE_ROWS)
and every other tenant of a shared deployment is answered "queue is full" until it drains.

A tenant with nothing in flight is always let in, however big its request (the message size
limit bounds that), so no request is refused for being big alone. Only callers with a tenant
(under auth) are counted: without auth every caller is the same one, bounded by the queue.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Iterator
from functools import partial

import grpc

from inference_svc.settings import TenantShare
from mlaas.errors import MlaasError, ResourceExhausted
from mlaas.services.auth import Authenticator
from mlaas.services.interceptors import wrap_handler


class TenantLimits:
    def __init__(self, share: TenantShare):
        self._share = share
        self._requests: dict[str, int] = {}
        self._rows: dict[str, int] = {}

    def take(self, tenant: str, rows: int) -> None:
        """Counts a request in; ResourceExhausted, with the limit, when the tenant's share is used."""
        if not tenant:
            return
        requests, held = self._requests.get(tenant, 0), self._rows.get(tenant, 0)
        if requests and requests >= self._share.max_requests:
            raise ResourceExhausted(
                f"{requests} of your requests are in flight on this worker, the limit per tenant "
                "(MLAAS_MAX_INFLIGHT_PER_TENANT); wait for answers before sending more"
            )
        if requests and held + rows > self._share.max_rows:
            raise ResourceExhausted(
                f"{held} rows of yours are in flight on this worker and this request adds {rows}; the "
                f"limit per tenant is {self._share.max_rows} (MLAAS_MAX_INFLIGHT_ROWS_PER_TENANT)"
            )
        self._requests[tenant] = requests + 1
        self._rows[tenant] = held + rows

    def give_back(self, tenant: str, rows: int) -> None:
        if not tenant:
            return
        left = self._requests[tenant] - 1
        if left:
            self._requests[tenant] = left
            self._rows[tenant] -= rows
        else:  # forget idle tenants: the tables stay as small as the set of active ones
            del self._requests[tenant], self._rows[tenant]

    @contextlib.contextmanager
    def held(self, tenant: str, rows: int) -> Iterator[None]:
        self.take(tenant, rows)
        try:
            yield
        finally:
            self.give_back(tenant, rows)

    def in_flight(self, tenant: str) -> tuple[int, int]:
        """(requests, rows) the tenant has in flight."""
        return self._requests.get(tenant, 0), self._rows.get(tenant, 0)


async def closed_when_idle(answers, requests, context, idle_seconds: float):
    """The answers of a client-streaming call, `answers(requests)`; the call is closed with
    DEADLINE_EXCEEDED when its client sent nothing for `idle_seconds` while none of its requests
    waits for an answer (a watchdog cancels the call's task: gRPC's reads take no timeout)."""
    last, unanswered, idle = [time.monotonic()], [0], asyncio.Event()
    call = asyncio.current_task()
    assert call is not None, "a coroutine of the loop runs in a task"

    async def counted():
        async for request in requests:
            unanswered[0] += 1
            last[0] = time.monotonic()
            yield request

    async def watch():
        while unanswered[0] or time.monotonic() - last[0] < idle_seconds:
            await asyncio.sleep(max(0.05, min(1.0, idle_seconds - (time.monotonic() - last[0]))))
        idle.set()
        call.cancel()

    watchdog = asyncio.ensure_future(watch())
    try:
        async for answer in answers(counted()):
            unanswered[0] = max(0, unanswered[0] - 1)
            last[0] = time.monotonic()
            yield answer
    except asyncio.CancelledError:
        if not idle.is_set():
            raise
        await context.abort(
            grpc.StatusCode.DEADLINE_EXCEEDED,
            f"the stream sent nothing for {idle_seconds:g} s (MLAAS_STREAM_IDLE_SECONDS); closed",
        )
    finally:
        watchdog.cancel()


def _answering(behaviour, context, requests):
    return behaviour(requests, context)


class TenantCalls(grpc.aio.ServerInterceptor):
    """At most `per_tenant` calls of one tenant at once on this server (the bulk worker, whose
    few calls at once, MLAAS_INFERENCE_BULK_CONCURRENCY, one tenant's idle streams could
    otherwise all hold); beyond, RESOURCE_EXHAUSTED. A tenant's stream that sends nothing for
    `idle_seconds` with nothing to answer is closed. The mesh's roles are not counted."""

    def __init__(self, auth: Authenticator, per_tenant: int, idle_seconds: float):
        self._auth = auth
        self._per_tenant = per_tenant
        self._idle_seconds = idle_seconds
        self._calls: collections.Counter[str] = collections.Counter()

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        try:
            identity = self._auth.identity(handler_call_details.invocation_metadata)
        except MlaasError:
            return handler  # refused by the auth interceptor already
        if identity.role:
            return handler
        return wrap_handler(handler, self._counted(identity.tenant, handler.request_streaming))

    def _counted(self, tenant: str, from_client: bool):
        calls, per_tenant, idle_seconds = self._calls, self._per_tenant, self._idle_seconds

        def wrap(behaviour, streaming):
            refusal = f"tenant {tenant} has {per_tenant} call(s) on the bulk port, its share of them"

            if streaming:

                async def stream(request_or_iterator, context):
                    if calls[tenant] >= per_tenant:
                        await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, refusal)
                    calls[tenant] += 1
                    try:
                        if from_client:
                            answer = partial(_answering, behaviour, context)
                            answers = closed_when_idle(answer, request_or_iterator, context, idle_seconds)
                        else:
                            answers = behaviour(request_or_iterator, context)
                        async for response in answers:
                            yield response
                    finally:
                        calls[tenant] -= 1

                return stream

            async def unary(request_or_iterator, context):
                if calls[tenant] >= per_tenant:
                    await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, refusal)
                calls[tenant] += 1
                try:
                    return await behaviour(request_or_iterator, context)
                finally:
                    calls[tenant] -= 1

            return unary

        return wrap
