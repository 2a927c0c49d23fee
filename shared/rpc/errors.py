"""Domain errors, raised anywhere in a service and mapped to gRPC status codes by the
error interceptor. Messages name the offending field, e.g. ``"page_size: must be ..."``."""

from __future__ import annotations

import grpc


class ShopsenseError(Exception):
    """Base of every domain error; ``code`` is the gRPC status it maps to."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(ShopsenseError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(ShopsenseError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(ShopsenseError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(ShopsenseError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(ShopsenseError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(ShopsenseError):
    """A dependency (Triton, another service, the database) cannot be reached."""

    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(ShopsenseError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


def from_status(code: grpc.StatusCode, message: str) -> ShopsenseError:
    """A domain error carrying another service's status, to pass a caller's error through."""
    error = ShopsenseError(message)
    error.code = code
    return error
