"""Open streams on a synchronous server, by kind and by caller.

Every open stream holds a worker thread until it ends, so streams are counted: each streaming
rpc (a kind: uploads, downloads, watches, feedback, labels) has its own slots, so kinds never
compete, and its own threads beside the ones unary calls and health checks use. Within a kind:
- a caller (a tenant, or a minted credential's scope) may open a stream only while it holds
  fewer than the slots still free, and never more than `per_caller`: however many slots the
  callers before it took, a newcomer always finds one;
- the mesh's own roles (runtimes' feedback, the scheduler's and Monitor's calls) have
  `reserved` slots of each kind that no tenant can take, and share the rest like any caller.

A client stream that sends nothing for `idle_seconds`, or is open longer than `max_seconds`
(however little it sends meanwhile), is closed with DEADLINE_EXCEEDED, so a stalled or dripping
upload gives its slot back; a server stream whose client does not take a message for
`idle_seconds` (a download nobody reads) is cancelled.
"""

from __future__ import annotations

import collections
import math
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import grpc

from mlaas.errors import MlaasError
from mlaas.services.auth import Authenticator
from mlaas.services.interceptors import wrap_handler


@dataclass(frozen=True)
class Caller:
    tenant: str
    scope: str
    is_role: bool


class StreamSlots:
    def __init__(self, authenticator: Authenticator, per_kind: int, per_caller: int, reserved: int):
        self._auth = authenticator
        self._per_kind, self._per_caller, self._reserved = per_kind, per_caller, reserved
        # kind -> caller -> streams it holds in the shared slots / in the reserved ones
        self._shared: dict[str, collections.Counter[Caller]] = collections.defaultdict(collections.Counter)
        self._in_reserve: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()

    def threads(self, kinds: int) -> int:
        """Threads that `kinds` streaming rpcs can hold at once."""
        return kinds * (self._per_kind + self._reserved)

    def caller(self, metadata) -> Caller:
        try:
            identity = self._auth.identity(metadata)
        except MlaasError:
            return Caller("", "", False)  # refused by the auth interceptor before it counts
        return Caller(identity.tenant, identity.scope, bool(identity.role) and self._auth.enabled)

    def acquire(self, kind: str, caller: Caller) -> tuple[str | None, bool]:
        """(None, the slot is a reserved one) when the stream may open; (why not, _) otherwise,
        for RESOURCE_EXHAUSTED."""
        with self._lock:
            if caller.is_role and self._in_reserve[kind] < self._reserved:
                self._in_reserve[kind] += 1
                return None, True
            held = self._shared[kind]
            free = self._per_kind - held.total()
            name = kind.rsplit("/", 1)[-1]
            if free <= 0:
                return f"all {self._per_kind} {name} streams here are open (MLAAS_MAX_STREAMS); retry later", False
            if self._auth.enabled:
                mine = held[caller]
                if mine >= self._per_caller:
                    return (
                        f"you have {mine} {name} streams open here, the limit per caller "
                        "(MLAAS_MAX_STREAMS_PER_CALLER); close one first"
                    ), False
                if mine >= free:
                    return (
                        f"you have {mine} {name} streams open here and {free} are free, kept for other "
                        "callers; close one first"
                    ), False
            held[caller] += 1
            return None, False

    def release(self, kind: str, caller: Caller, reserved: bool) -> None:
        with self._lock:
            if reserved:
                self._in_reserve[kind] -= 1
                return
            held = self._shared[kind]
            held[caller] -= 1
            if held[caller] <= 0:
                del held[caller]

    def open(self, kind: str | None = None) -> int:
        """Streams open now, of one kind or of all."""
        with self._lock:
            kinds = [kind] if kind else list(self._shared.keys() | self._in_reserve.keys())
            return sum(self._shared[k].total() + self._in_reserve[k] for k in kinds)


_END = object()


def idle_limited(
    requests: Iterator, context: grpc.ServicerContext, idle_seconds: float, max_seconds: float = math.inf
) -> Iterator:
    """The requests of a client stream, aborting the call with DEADLINE_EXCEEDED when the client
    sends nothing for `idle_seconds` or the stream is open for `max_seconds`. A reader thread
    takes them from gRPC, whose iterator cannot wait with a timeout; it ends with the call."""
    closes_at = time.monotonic() + max_seconds
    arrived: queue.Queue = queue.Queue(maxsize=2)
    done = threading.Event()

    def hand_over(item) -> None:
        while not done.is_set():
            try:
                return arrived.put(item, timeout=0.5)
            except queue.Full:
                continue

    def read():
        try:
            for request in requests:
                hand_over(request)
        except grpc.RpcError:
            return  # the client went away: the handler's wait ends with the call
        except Exception as err:  # the handler raises it
            return hand_over(err)
        hand_over(_END)

    threading.Thread(target=read, name="stream-reader", daemon=True).start()
    try:
        while True:
            deadline = min(time.monotonic() + idle_seconds, closes_at)
            while True:
                try:
                    item = arrived.get(timeout=min(0.5, max(0.0, deadline - time.monotonic())))
                    break
                except queue.Empty:
                    if not context.is_active():
                        return
                    if time.monotonic() >= closes_at:
                        context.abort(
                            grpc.StatusCode.DEADLINE_EXCEEDED,
                            f"the stream was open for {max_seconds:g} s, the most it may (MLAAS_STREAM_MAX_SECONDS)",
                        )
                    if time.monotonic() >= deadline:
                        context.abort(
                            grpc.StatusCode.DEADLINE_EXCEEDED,
                            f"the stream sent nothing for {idle_seconds:g} s (MLAAS_STREAM_IDLE_SECONDS); closed",
                        )
            if item is _END:
                return
            if isinstance(item, Exception):
                raise item
            yield item
    finally:
        done.set()


class StalledSends:
    """Server streams whose client stopped reading: gRPC blocks a send until the client takes it,
    holding the stream's slot and thread, so a send that has not gone out within `seconds`
    cancels its call. A watch that has nothing to send is not stalled."""

    def __init__(self, seconds: float):
        self._seconds = seconds
        self._sending: dict[int, tuple[float, grpc.ServicerContext]] = {}  # stream -> (since, context)
        self._lock = threading.Lock()
        self._watch: threading.Thread | None = None

    def sending(self, stream: int, context: grpc.ServicerContext) -> None:
        with self._lock:
            self._sending[stream] = (time.monotonic(), context)
            if self._watch is None:
                self._watch = threading.Thread(target=self._cancel_stalled, name="stalled-sends", daemon=True)
                self._watch.start()

    def sent(self, stream: int) -> None:
        with self._lock:
            self._sending.pop(stream, None)

    def _cancel_stalled(self) -> None:
        while True:
            time.sleep(min(1.0, self._seconds / 2))
            now = time.monotonic()
            with self._lock:
                stalled = [(k, c) for k, (since, c) in self._sending.items() if now - since >= self._seconds]
                for stream, _ in stalled:
                    del self._sending[stream]
            for _, context in stalled:
                context.cancel()


def sent_while_read(responses: Iterator, stalled: StalledSends, context: grpc.ServicerContext) -> Iterator:
    """The responses; gRPC asks for the next one once the last went out, so the time between a
    yield and the next request is the send's."""
    stream = id(context)
    try:
        for response in responses:
            stalled.sending(stream, context)
            yield response
            stalled.sent(stream)
    finally:
        stalled.sent(stream)


class StreamSlotInterceptor(grpc.ServerInterceptor):
    def __init__(self, slots: StreamSlots, idle_seconds: float, max_seconds: float):
        self._slots = slots
        self._idle_seconds, self._max_seconds = idle_seconds, max_seconds
        self._stalled = StalledSends(idle_seconds)

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None or not (handler.request_streaming or handler.response_streaming):
            return handler
        slots, idle_seconds, max_seconds, stalled = self._slots, self._idle_seconds, self._max_seconds, self._stalled
        kind = handler_call_details.method
        caller = slots.caller(handler_call_details.invocation_metadata)
        from_client = handler.request_streaming

        def wrap(behaviour, streaming):
            def taken(context):
                refused, reserved = slots.acquire(kind, caller)
                if refused is not None:
                    context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, refused)
                return reserved

            def requests_of(request, context):
                return idle_limited(request, context, idle_seconds, max_seconds) if from_client else request

            if streaming:

                def slotted_stream(request, context):
                    reserved = taken(context)
                    try:
                        yield from sent_while_read(behaviour(requests_of(request, context), context), stalled, context)
                    finally:
                        slots.release(kind, caller, reserved)

                return slotted_stream

            def slotted_upload(request_iterator, context):
                reserved = taken(context)
                try:
                    return behaviour(requests_of(request_iterator, context), context)
                finally:
                    slots.release(kind, caller, reserved)

            return slotted_upload

        return wrap_handler(handler, wrap)
