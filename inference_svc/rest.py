"""The Open Inference Protocol over HTTP/REST, with Triton's binary tensor data, configuration,
statistics and repository extensions: an adapter over the same data plane and catalog as the
gRPC servicer, under the same rules (access.py: bearer tokens, who may use the deployment), the
same limits and the same errors (the gRPC status as an HTTP one, the reason as `{"error": ...}`).

It is a bare ASGI application on uvicorn's httptools server (mlaas/services/http_server.py), in
each worker process beside the gRPC server, on the worker's event loop. The stack was picked by
bench/http_stacks.py: about 3x the requests/s of FastAPI on uvicorn (what MLServer and KServe
use) at 16 connections, and above Starlette's router and aiohttp's server.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

import grpc
import orjson
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor

from inference_svc.access import CALLER_TENANT, RuntimeRules
from inference_svc.catalog import Catalog, LoadOptions
from inference_svc.dataplane import DataPlane
from inference_svc.rest_codec import (
    HEADER_LENGTH,
    answer_body,
    byte_count,
    json_object,
    parse_request,
)  # fmt: skip
from inference_svc.settings import RuntimeSettings
from mlaas.errors import InvalidArgument, MlaasError, NotFound
from mlaas.services.auth import bearer_token
from mlaas.services.http_server import HTTP_STATUS

log = logging.getLogger(__name__)

_JSON = [(b"content-type", b"application/json")]
# JSON larger than this is parsed on the worker's parsing thread, one at a time: its Python
# objects would otherwise hold the event loop (~0.3 s for 16 MiB) and the memory of many.
PARSE_ON_LOOP_BYTES = 256 * 2**10
_SERVICE = "/inference.GRPCInferenceService/"
_MODEL = r"/v2/models/(?P<model>[^/]+)(?:/versions/(?P<version>[^/]+))?"
_INT64 = {
    FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_FIXED64, FieldDescriptor.TYPE_SFIXED64,
}  # fmt: skip

Reply = tuple[int, bytes, list[tuple[bytes, bytes]]]


class _BodyRefused(MlaasError):
    """The body is not read to its end: the answer closes the connection."""

    def __init__(self, status: int, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.status, self.code = status, code


class BodyBudget:
    """Bytes of request bodies in flight on a worker, in all and per tenant."""

    def __init__(self, total: int):
        self._total, self._per_tenant = total, total // 2
        self._held = 0
        self._by_tenant: dict[str, int] = {}

    def take(self, tenant: str, size: int) -> None:
        held = self._by_tenant.get(tenant, 0)
        if self._held + size > self._total or (tenant and held + size > self._per_tenant):
            raise _BodyRefused(
                429, grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"{self._held} bytes of request bodies are in flight on this worker ({held} of them yours); "
                "retry when some are answered",
            )  # fmt: skip
        self._held += size
        self._by_tenant[tenant] = held + size

    def give_back(self, tenant: str, size: int) -> None:
        self._held -= size
        left = self._by_tenant.pop(tenant) - size
        if left:
            self._by_tenant[tenant] = left


def _json_reply(status: int, value) -> Reply:
    return status, orjson.dumps(value), _JSON


def _error(status: int, message: str) -> Reply:
    return _json_reply(status, {"error": message})


def _numbers(message, data: dict) -> dict:
    """protobuf's JSON writes 64-bit integers as strings; Triton's REST API writes numbers."""
    for field in message.DESCRIPTOR.fields:
        if field.name not in data:
            continue
        value = getattr(message, field.name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            inner = field.message_type.fields_by_name["value"]
            if inner.message_type is not None:
                for key, item in value.items():
                    _numbers(item, data[field.name][str(key)])
        elif field.message_type is not None:
            items = zip(value, data[field.name], strict=True) if field.is_repeated else [(value, data[field.name])]
            for item, item_data in items:
                _numbers(item, item_data)
        elif field.type in _INT64:
            data[field.name] = [int(v) for v in data[field.name]] if field.is_repeated else int(data[field.name])
    return data


def _message(message) -> dict:
    return _numbers(
        message,
        json_format.MessageToDict(message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True),
    )


class RestApp:
    """The ASGI application: route, authenticate and admit, read the body within its limit,
    answer. One route table maps each path to its handler and to the gRPC method whose rules
    (mlaas.services.permissions, access.py) apply to it."""

    def __init__(self, settings: RuntimeSettings, catalog: Catalog, plane: DataPlane, rules: RuntimeRules | None):
        self._settings = settings
        self._catalog = catalog
        self._plane = plane
        self._rules = rules
        self._budget = BodyBudget(settings.rest_body_budget_bytes)
        self._parser = ThreadPoolExecutor(1, thread_name_prefix="rest-json")
        Handler = Callable[[dict, dict, bytes], Awaitable[Reply]]
        routes: list[tuple[str, str, Handler, str]] = [
            ("GET", "/v2/health/live", self._live, "ServerLive"),
            ("GET", "/v2/health/ready", self._ready, "ServerReady"),
            ("GET", "/v2", self._server_metadata, "ServerMetadata"),
            ("GET", "/v2/models/stats", self._statistics, "ModelStatistics"),
            ("GET", _MODEL, self._model_metadata, "ModelMetadata"),
            ("GET", _MODEL + "/ready", self._model_ready, "ModelReady"),
            ("POST", _MODEL + "/infer", self._infer, "ModelInfer"),
            ("GET", _MODEL + "/config", self._model_config, "ModelConfig"),
            ("GET", _MODEL + "/stats", self._statistics, "ModelStatistics"),
            ("POST", "/v2/repository/index", self._repository_index, "RepositoryIndex"),
            ("POST", r"/v2/repository/models/(?P<model>[^/]+)/load", self._load, "RepositoryModelLoad"),
            ("POST", r"/v2/repository/models/(?P<model>[^/]+)/unload", self._unload, "RepositoryModelUnload"),
        ]
        self._routes = [(verb, re.compile(path + "/?"), handler, _SERVICE + rpc) for verb, path, handler, rpc in routes]

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        read_whole = [False]

        async def receive_body():
            message = await receive()
            read_whole[0] = message["type"] == "http.request" and not message.get("more_body")
            return message

        try:
            status, body, headers = await self._reply(scope, receive_body)
        except _BodyRefused as err:  # its connection closes: the body was not read to its end
            status, body, headers = _error(err.status, err.message)
        except MlaasError as err:
            status, body, headers = _error(HTTP_STATUS.get(err.code, 500), err.message)
        except Exception:
            log.exception("REST %s %s failed", scope["method"], scope["path"])
            status, body, headers = _error(500, "internal error; see the runtime's log")
        if not read_whole[0] and _declares_body(scope["headers"]):
            # Answered before its body was read (refused, or a route that takes none): the rest
            # of the body must not keep the connection, or its trickle, alive.
            headers = [*headers, (b"connection", b"close")]
        await send({
            "type": "http.response.start", "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        })  # fmt: skip
        await send({"type": "http.response.body", "body": body})

    async def _reply(self, scope, receive) -> Reply:
        path, verb = scope["path"], scope["method"]
        allowed = []
        for route_verb, pattern, handler, method in self._routes:
            match = pattern.fullmatch(path)
            if match is None:
                continue
            if route_verb != verb:
                allowed.append(route_verb)
                continue
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            params = {k: v or "" for k, v in match.groupdict().items()}
            refusal = await self._admit(method, headers, params.get("model", ""))
            if refusal is not None:
                return refusal
            if verb != "POST":  # no GET route reads a body
                return await handler(params, headers, b"")
            # Under auth, callers that name no tenant (roles, the operator's repository calls)
            # share one bucket of the budget: none may take the worker's whole budget.
            tenant = CALLER_TENANT.get() or ("(no tenant)" if self._rules is not None else "")
            held = [0]
            try:
                return await handler(params, headers, await self._body(headers, receive, tenant, held))
            finally:
                if held[0]:
                    self._budget.give_back(tenant, held[0])
        if allowed:
            status, body, reply_headers = _error(405, f"{path} takes {', '.join(allowed)}")
            return status, body, [*reply_headers, (b"allow", ", ".join(allowed).encode())]
        return _error(404, f"no such endpoint: {verb} {path}")

    async def _admit(self, method: str, headers: dict, model: str) -> Reply | None:
        """Applies the runtime's rules (None: let it through); readiness of a model a caller
        may not see reads as not ready, as over gRPC."""
        if self._rules is None:
            return None
        metadata = _caller(headers)
        identity = self._rules.caller(method, metadata)
        if identity is None:
            return None
        try:
            await self._rules.admit(identity, bearer_token(metadata), method, model)
        except NotFound:
            if method.endswith("/ModelReady"):
                return _json_reply(503, {"name": model, "ready": False})
            raise
        return None

    async def _body(self, headers: dict, receive, tenant: str, held: list[int]) -> bytes:
        """The request's body: refused past the gRPC side's message limit before it is read,
        read within the settings' rest_body_seconds and within the worker's budget of bodies in
        flight (`held` counts what this request took of it, given back by the caller)."""
        try:
            declared = byte_count(headers.get("content-length"))
        except InvalidArgument as err:
            raise _BodyRefused(400, grpc.StatusCode.INVALID_ARGUMENT, f"Content-Length: {err.message}") from None
        limit = self._settings.max_request_bytes
        if declared is not None and declared > limit:
            raise _BodyRefused(413, grpc.StatusCode.RESOURCE_EXHAUSTED, self._settings.too_large(declared))
        chunks = []
        try:
            async with asyncio.timeout(self._settings.rest_body_seconds):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        raise InvalidArgument("the client went away before sending the whole body")
                    chunk = message.get("body", b"")
                    if held[0] + len(chunk) > limit:
                        too_large = self._settings.too_large(held[0] + len(chunk))
                        raise _BodyRefused(413, grpc.StatusCode.RESOURCE_EXHAUSTED, f"{too_large} (or more)")
                    if chunk:
                        self._budget.take(tenant, len(chunk))
                        held[0] += len(chunk)
                        chunks.append(chunk)
                    if not message.get("more_body"):
                        return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        except TimeoutError:
            raise _BodyRefused(
                408,
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"the body did not arrive within {self._settings.rest_body_seconds:g} s (MLAAS_REST_BODY_SECONDS)",
            ) from None

    # -- handlers: (path parameters, headers, body) -> reply ------------------------------------

    async def _live(self, params, headers, body) -> Reply:
        return _json_reply(200, {"live": True})

    async def _ready(self, params, headers, body) -> Reply:
        ready = self._catalog.server_ready()
        return _json_reply(200 if ready else 503, {"ready": ready})

    async def _server_metadata(self, params, headers, body) -> Reply:
        return _json_reply(200, _message(self._catalog.server_metadata()))

    async def _model_metadata(self, params, headers, body) -> Reply:
        return _json_reply(200, _message(self._catalog.model_metadata(params["model"], params["version"])))

    async def _model_ready(self, params, headers, body) -> Reply:
        ready = self._catalog.model_ready(params["model"], params["version"])
        return _json_reply(200 if ready else 503, {"name": params["model"], "ready": ready})

    async def _model_config(self, params, headers, body) -> Reply:
        config = self._catalog.model_config(params["model"], params["version"]).config
        return _json_reply(200, _message(config))

    async def _statistics(self, params, headers, body) -> Reply:
        stats = self._catalog.statistics(params.get("model", ""), params.get("version", ""))
        return _json_reply(200, _message(stats))

    async def _repository_index(self, params, headers, body) -> Reply:
        ready_only = bool(json_object(body, empty_is_nothing=True).get("ready", False))
        return _json_reply(200, _message(self._catalog.repository_index(ready_only)).get("models", []))

    async def _load(self, params, headers, body) -> Reply:
        parameters = json_object(body, empty_is_nothing=True).get("parameters") or {}
        uri = parameters.get("uri", "") if isinstance(parameters, dict) else None
        if not isinstance(uri, str):
            raise InvalidArgument("parameters must be an object whose uri, if given, is a string")
        await self._catalog.load(params["model"], LoadOptions(uri=uri), _caller(headers))
        return _json_reply(200, {})

    async def _unload(self, params, headers, body) -> Reply:
        await self._catalog.unload(params["model"], _caller(headers))
        return _json_reply(200, {})

    async def _infer(self, params, headers, body) -> Reply:
        try:
            length = byte_count(headers.get(HEADER_LENGTH))
        except InvalidArgument as err:
            raise InvalidArgument(f"{HEADER_LENGTH}: {err.message}") from None
        parse = functools.partial(
            parse_request, body, length, params["model"], params["version"],
            self._settings.max_json_bytes, self._settings.max_bytes_elements,
        )  # fmt: skip
        json_size = len(body) if length is None else length
        if json_size > PARSE_ON_LOOP_BYTES:
            request, raws = await asyncio.get_running_loop().run_in_executor(self._parser, parse)
        else:
            request, raws = parse()
        answer = await self._plane.infer(request, "rest", raws)
        payload, json_length = answer_body(answer, request)
        if json_length is None:
            return 200, payload, _JSON
        return 200, payload, [(b"content-type", b"application/octet-stream"),
                              (HEADER_LENGTH.encode(), str(json_length).encode())]  # fmt: skip


def _declares_body(raw_headers) -> bool:
    for name, value in raw_headers:
        if name.lower() == b"transfer-encoding" or (
            name.lower() == b"content-length" and value.strip() not in (b"", b"0")
        ):
            return True
    return False


def _caller(headers: dict) -> list[tuple[str, str]]:
    return [("authorization", headers["authorization"])] if "authorization" in headers else []
