"""Who may use a mesh-managed runtime: the tenants the scheduler shows its deployment to (the
owner and the lease holders), asked with the caller's own token so that the rule lives in one
place, as the Monitor does (DeploymentAccess says how answers are remembered; a dropped lease or
a decommission takes effect within seconds, open streams included: they are checked again as
they go on).

Everyone else gets the same NOT_FOUND as for a model that is not loaded here. The repository
rpcs and the replica's load (RuntimeService.GetLoad: a shared deployment's load tells of every
tenant's traffic) of a managed runtime are the scheduler's alone. A standalone runtime (no deployment) is its
operator's: any authenticated caller may infer, and only the operator's own tenant (the one its
MLAAS_TOKEN names) may change its repository.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc

from mlaas.client import bearer_metadata
from mlaas.errors import DeadlineExceeded, MlaasError, NotFound, PermissionDenied, Unavailable
from mlaas.oip import open_inference_v2_pb2 as oip
from mlaas.services import permissions
from mlaas.services.auth import Authenticator, Identity, bearer_token
from mlaas.services.interceptors import wrap_handler

_SERVICE = "/inference.GRPCInferenceService/"
_NODE_LABELS = "/mlaas.v1.NodeLabelsService/"  # a STRICT deployment's labels, under the same rules
_RUNTIME = "/mlaas.v1.RuntimeService/"
# Answer nothing of the models to strangers; the server-wide rpcs tell nothing of any tenant.
_SERVER_WIDE = {_SERVICE + m for m in ("ServerLive", "ServerReady", "ServerMetadata")}
# The runtime's operator's: the scheduler on a deployment's runtime.
_OPERATORS = {_SERVICE + m for m in ("RepositoryIndex", "RepositoryModelLoad", "RepositoryModelUnload")} | {
    _RUNTIME + "GetLoad"
}

# The tenant of the call being served (set by the interceptor below, in the call's own task).
CALLER_TENANT: contextvars.ContextVar[str] = contextvars.ContextVar("caller_tenant", default="")


def feedback_id(request_id: str) -> str:
    """The id a request's feedback record carries: under the caller's tenant, so that labels
    reported by one tenant never match (nor tell about) another's requests on a shared
    deployment. The Monitor puts labels under the reporter's tenant the same way."""
    tenant = CALLER_TENANT.get()
    return f"{tenant}/{request_id}" if tenant and request_id else request_id


# (tenant's token) -> None when allowed; raises NotFound (or Unavailable) otherwise.
AskScheduler = Callable[[str | None], Awaitable[None]]


def scheduler_check(scheduler_address: str, deployment_id: str, timeout: float = 5.0) -> AskScheduler:
    """Asks the scheduler for the deployment with the caller's token, over one channel that the
    runtime worker keeps (opened on first use, on the worker's event loop)."""
    from mlaas import tls
    from mlaas.errors import from_rpc_error
    from mlaas.v1 import scheduler_pb2, scheduler_pb2_grpc

    stub: list[scheduler_pb2_grpc.SchedulerServiceStub] = []
    request = scheduler_pb2.GetDeploymentRequest(deployment_id=deployment_id)

    async def check(token: str | None) -> None:
        if not stub:
            stub.append(scheduler_pb2_grpc.SchedulerServiceStub(tls.aio_channel(scheduler_address)))
        try:
            await stub[0].GetDeployment(request, metadata=bearer_metadata(token), timeout=timeout)
        except grpc.aio.AioRpcError as err:
            raise from_rpc_error(err) from None

    return check


def own_tenant(auth: Authenticator, token: str | None) -> str:
    """The tenant the runtime's own token names ("" without one: then nobody is its operator)."""
    if not token:
        return ""
    try:
        return auth.identity(bearer_metadata(token)).tenant
    except MlaasError:
        return ""


def _model_name(request) -> str:
    return getattr(request, "model_name", "") or getattr(request, "name", "")


class DeploymentAccess:
    """A tenant's first call waits for the scheduler's answer. After a yes, calls go straight
    through: once the yes is `remember_seconds` old, the next call asks again in the background,
    and a no then refuses the calls after it (revocation within a few seconds, without putting
    the scheduler on the path of every call). While the scheduler cannot answer (a restart),
    a tenant allowed within `outage_grace_seconds` goes on: nobody can revoke anything meanwhile.
    A no is remembered `refusal_seconds`, so that a stranger's calls cost the scheduler little."""

    def __init__(
        self,
        ask: AskScheduler,
        remember_seconds: float = 2.0,
        outage_grace_seconds: float = 300.0,
        refusal_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._ask = ask
        self._clock = clock
        self._remember = remember_seconds
        self._grace = outage_grace_seconds
        self._refusal = refusal_seconds
        self._allowed_at: dict[str, float] = {}  # tenant -> monotonic time of the last yes
        self._fresh_until: dict[str, float] = {}  # tenant -> until when its last yes needs no question
        self._refused_until: dict[str, float] = {}
        self._asking: dict[str, asyncio.Future] = {}  # one question per tenant at a time

    def allowed_now(self, tenant: str) -> bool:
        return self._fresh_until.get(tenant, 0.0) > self._clock()

    async def check(self, tenant: str, token: str | None, model: str) -> None:
        """Returns when `tenant` may use this runtime; NotFound (as for a missing model; `model`
        "": a stream that named none yet) if not."""
        if self.allowed_now(tenant):
            return
        missing = NotFound(f"model {model!r} is not loaded here" if model else "no model is loaded here for you")
        now = self._clock()
        if self._refused_until.get(tenant, 0.0) > now:
            raise missing
        question = self._question(tenant, token)
        if self._allowed_at.get(tenant, -1e9) + self._grace > now:
            return  # a recent yes: let this call through while the question is answered
        await asyncio.shield(question)
        if tenant not in self._allowed_at:
            raise missing

    def _question(self, tenant: str, token: str | None) -> asyncio.Future:
        asking = self._asking.get(tenant)
        if asking is None:
            asking = self._asking[tenant] = asyncio.ensure_future(self._answer(tenant, token))
            asking.add_done_callback(lambda done: done.cancelled() or done.exception())  # seen, if nobody waits
        return asking

    async def _answer(self, tenant: str, token: str | None) -> None:
        try:
            await self._ask(token)
        except NotFound:
            self._allowed_at.pop(tenant, None)
            self._fresh_until.pop(tenant, None)
            self._refused_until[tenant] = self._clock() + self._refusal
        except (Unavailable, DeadlineExceeded):
            if self._allowed_at.get(tenant, -1e9) + self._grace < self._clock():
                raise
            self._fresh_until[tenant] = self._clock() + self._remember  # ask again later, not per call
        else:
            self._allowed_at[tenant] = now = self._clock()
            self._fresh_until[tenant] = now + self._remember
            self._refused_until.pop(tenant, None)
        finally:
            self._asking.pop(tenant, None)


class RuntimeRules:
    """Who may call what on this runtime, whatever the protocol (the gRPC interceptor below and
    the REST adapter, rest.py, both ask it). `access`: who may use the deployment's models (None
    on a standalone runtime: every tenant). `operator`: who may load and unload models and read
    the load, the scheduler's role or, on a standalone runtime, the tenant whose token the runtime runs
    with (it fetches with that token: another tenant must not make it fetch what only the
    operator may read)."""

    def __init__(self, auth: Authenticator, access: DeploymentAccess | None, operator: str):
        self.auth = auth
        self.access = access
        self._operator = operator

    def caller(self, method: str, metadata) -> Identity | None:
        """The authenticated caller of `method` (None when the rules do not concern it: auth
        off, or a public method); raises Unauthenticated or PermissionDenied (mlaas.services.permissions)."""
        if not self.auth.enabled or self.auth.is_public(method):
            return None
        identity = self.auth.identity(metadata)  # authenticated once (a scoped token is verified)
        denied = permissions.refusal(method, identity)
        if denied is not None:
            raise PermissionDenied(denied)
        return None if method in _SERVER_WIDE else identity

    def is_operator(self, identity: Identity) -> bool:
        return identity.tenant == self._operator

    async def admit(self, identity: Identity, token: str | None, method: str, model: str) -> None:
        """Returns when `identity` may call `method` on `model`, with CALLER_TENANT naming it (in
        the caller's task, for feedback ids and its share of the worker, limits.py); raises the
        MlaasError that refuses it (NotFound, as for a model not loaded here, to strangers)."""
        if method in _OPERATORS:
            if not self.is_operator(identity):
                raise _operators_refusal()
            return
        if identity.role:
            return  # the rules of mlaas.services.permissions let no role but tenants' reach here
        if self.access is not None:
            await self.access.check(identity.tenant, token, model)
        CALLER_TENANT.set(identity.tenant)


class RuntimeAccessInterceptor(grpc.aio.ServerInterceptor):
    """RuntimeRules on gRPC; runs after the auth interceptor (which has authenticated the caller
    and refused what mlaas.services.permissions refuses)."""

    def __init__(self, rules: RuntimeRules):
        self._rules = rules

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if not method.startswith((_SERVICE, _NODE_LABELS, _RUNTIME)) or method in _SERVER_WIDE:
            return handler
        metadata = handler_call_details.invocation_metadata
        try:
            identity = self._rules.auth.identity(metadata)
        except MlaasError:
            return handler  # the auth interceptor has refused it already
        if method in _OPERATORS:
            allowed = self._rules.is_operator(identity)
            return handler if allowed else _refusing(handler, _operators_refusal)
        if identity.role:
            return handler
        return wrap_handler(handler, self._guard(identity, bearer_token(metadata), method))

    def _guard(self, identity: Identity, token: str | None, method: str):
        rules = self._rules

        def wrap(behaviour, streaming):
            if method.endswith("/ModelStreamInfer"):

                async def stream(request_iterator, context):
                    CALLER_TENANT.set(identity.tenant)
                    checked = request_iterator
                    if rules.access is not None:  # as it opens, before it holds anything; again as it goes on
                        try:
                            await rules.access.check(identity.tenant, token, "")
                        except MlaasError as err:
                            await context.abort(err.code, err.message)
                        checked = _checked_requests(request_iterator, rules.access, identity.tenant, token)
                    async for response in behaviour(checked, context):
                        yield response

                return stream

            async def unary(request, context):
                try:
                    await rules.admit(identity, token, method, _model_name(request))
                except NotFound as err:
                    if method.endswith("/ModelReady"):
                        return oip.ModelReadyResponse(ready=False)
                    await context.abort(err.code, err.message)
                except MlaasError as err:
                    await context.abort(err.code, err.message)
                return await behaviour(request, context)

            return unary

        return wrap


async def _checked_requests(requests: AsyncIterator, access: DeploymentAccess, tenant: str, token: str | None):
    """The stream's requests, each let through while the caller may still use the runtime."""
    async for request in requests:
        if not access.allowed_now(tenant):
            await access.check(tenant, token, request.model_name)
        yield request


def _operators_refusal() -> MlaasError:
    return PermissionDenied("this runtime's repository and load are its operator's (the scheduler's), not yours")


def _refusing(handler, error: Callable[[], MlaasError]):
    def wrap(behaviour, streaming):
        async def refuse(request, context):
            err = error()
            await context.abort(err.code, err.message)

        return refuse

    return wrap_handler(handler, wrap)
