"""Turns MlaasError raised in a servicer into its gRPC status, where it is raised.

Applied as a class decorator, so servicers answer with the right status however they are
hosted: behind the mesh's server or inside grpcio-testing's in-memory server. Works for sync
handlers and for grpc.aio coroutines and async generators. Any other exception is a bug: it is
logged with its traceback and answered INTERNAL (grpc.aio alone would answer UNKNOWN with the
exception's text and log nothing).
"""

from __future__ import annotations

import functools
import inspect
import logging

import grpc

from mlaas.errors import MlaasError

log = logging.getLogger(__name__)


def _status_of(method: str, err: Exception) -> tuple[grpc.StatusCode, str]:
    if isinstance(err, MlaasError):
        return err.code, err.message
    log.exception("unexpected error in %s", method)
    return grpc.StatusCode.INTERNAL, f"internal error in {method}: {type(err).__name__}"


def _abort(context: grpc.ServicerContext, method: str, err: Exception):
    context.abort(*_status_of(method, err))


def _guard(name: str, fn):
    if inspect.isasyncgenfunction(fn):

        @functools.wraps(fn)
        async def async_stream(self, request, context):
            try:
                async for item in fn(self, request, context):
                    yield item
            except grpc.aio.AbortError:
                raise  # the handler ended the call itself
            except Exception as err:
                await context.abort(*_status_of(name, err))

        return async_stream

    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_unary(self, request, context):
            try:
                return await fn(self, request, context)
            except grpc.aio.AbortError:
                raise
            except Exception as err:
                await context.abort(*_status_of(name, err))

        return async_unary

    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def stream(self, request, context):
            try:
                yield from fn(self, request, context)
            except Exception as err:
                if isinstance(err, MlaasError) or not _already_aborted(context):
                    _abort(context, name, err)
                raise

        return stream

    @functools.wraps(fn)
    def unary(self, request, context):
        try:
            return fn(self, request, context)
        except Exception as err:
            if isinstance(err, MlaasError) or not _already_aborted(context):
                _abort(context, name, err)
            raise

    return unary


def _already_aborted(context) -> bool:
    code = context.code() if hasattr(context, "code") else None
    return code is not None and code != grpc.StatusCode.OK


def maps_errors(cls):
    """Class decorator: every rpc method the generated base class declares gets error mapping."""
    base_rpcs = {
        name
        for base in cls.__mro__[1:]
        for name, member in vars(base).items()
        if base.__name__.endswith("Servicer") and callable(member) and name[:1].isupper()
    }
    for name in base_rpcs & set(vars(cls)):
        setattr(cls, name, _guard(name, vars(cls)[name]))
    return cls
