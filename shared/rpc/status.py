"""Domain errors and gRPC status codes, both ways: the only place that pairs them.

The server interceptor answers a raised :class:`~shared.errors.ShopsenseError` with
``status_of(error)``; a service passing on another service's refusal turns the
``grpc.RpcError`` it got back into the domain error with ``error_from_status``.
"""

from __future__ import annotations

import grpc

from shared.errors import (
    AlreadyExists,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    ShopsenseError,
    Unavailable,
    Unimplemented,
)

_CODES: dict[type[ShopsenseError], grpc.StatusCode] = {
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    NotFound: grpc.StatusCode.NOT_FOUND,
    AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
    DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    Unimplemented: grpc.StatusCode.UNIMPLEMENTED,
}
_ERRORS: dict[grpc.StatusCode, type[ShopsenseError]] = {code: kind for kind, code in _CODES.items()}


def status_of(error: ShopsenseError) -> grpc.StatusCode:
    """The status a domain error is answered with (INTERNAL for an unmapped one)."""
    for kind in type(error).__mro__:
        code = _CODES.get(kind)  # type: ignore[arg-type]
        if code is not None:
            return code
    return grpc.StatusCode.INTERNAL


def error_from_status(code: grpc.StatusCode, message: str) -> ShopsenseError:
    """The domain error another service answered with, to pass it on as it is."""
    return _ERRORS.get(code, ShopsenseError)(message)
