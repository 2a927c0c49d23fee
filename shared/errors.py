"""The suite's domain errors: what went wrong, in words that name the offending field
(``"page_size: must be ..."``), and nothing about the transport.

Storage, search, the models and the services raise them; the gRPC interceptor maps each
class to its status code (``shared/rpc/status.py``), so this module sits below every other
one and knows no gRPC.
"""

from __future__ import annotations


class ShopsenseError(Exception):
    """Base of every domain error; a bare one is an internal error."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(ShopsenseError):
    """The caller's request is malformed; the message names the field."""


class NotFound(ShopsenseError):
    """A named thing (version, experiment, job, product) does not exist."""


class AlreadyExists(ShopsenseError):
    """Creating a thing whose name is taken by a different one."""


class FailedPrecondition(ShopsenseError):
    """The request is well formed but the system is not in a state to do it."""


class ResourceExhausted(ShopsenseError):
    """A limit (batch size, queue) is exceeded; nothing was done."""


class Unavailable(ShopsenseError):
    """A dependency (Triton, another service, the database) cannot be reached; retry."""


class DeadlineExceeded(ShopsenseError):
    """The work did not finish within the caller's deadline."""


class Unimplemented(ShopsenseError):
    """The server does not offer this call (e.g. an operator's call asked of the gateway)."""
