"""One error hierarchy for both sides of the wire.

Servers raise these and the service interceptor turns them into a gRPC status with the same
message; the client SDK turns a gRPC status back into the matching class, so application code
catches `mlaas.errors.NotFound` whichever side it is on.
"""

from __future__ import annotations

import grpc


class MlaasError(Exception):
    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InvalidArgument(MlaasError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(MlaasError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(MlaasError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(MlaasError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(MlaasError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unauthenticated(MlaasError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(MlaasError):
    code = grpc.StatusCode.PERMISSION_DENIED


class Unavailable(MlaasError):
    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(MlaasError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Internal(MlaasError):
    """A bug on the server's side (logged there with its traceback)."""

    code = grpc.StatusCode.INTERNAL


class Aborted(MlaasError):
    """A concurrent change won: read again and decide again."""

    code = grpc.StatusCode.ABORTED


class Cancelled(MlaasError):
    """The caller went away before the answer."""

    code = grpc.StatusCode.CANCELLED


_BY_CODE = {
    cls.code: cls
    for cls in (
        InvalidArgument,
        NotFound,
        AlreadyExists,
        FailedPrecondition,
        ResourceExhausted,
        Unauthenticated,
        PermissionDenied,
        Unavailable,
        DeadlineExceeded,
        Internal,
        Aborted,
        Cancelled,
    )
}


def from_rpc_error(error: grpc.RpcError) -> MlaasError:
    """The MlaasError matching a failed call's status (MlaasError itself for other codes)."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    details = (error.details() if hasattr(error, "details") else None) or str(error)
    cls = _BY_CODE.get(code, MlaasError)
    err = cls(details)
    err.code = code
    return err
