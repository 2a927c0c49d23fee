"""structlog configured for JSON lines; the request id and experiment arm ride in contextvars,
and shoppers' ids and queries are redacted (shared/rpc/privacy.py)."""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog

from shared.rpc.privacy import redact, set_log_key


def configure_logging(
    level: str = "info", service: str = "", log_key: str = "", stream: TextIO | None = None
) -> None:
    """JSON logs on ``stream`` (default stderr), one object a line, carrying bound
    contextvars (request_id, arm, the shopper's tag under ``log_key``)."""
    set_log_key(log_key)
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=stream or sys.stderr),
        cache_logger_on_first_use=False,
    )
    if service:
        structlog.contextvars.bind_contextvars(service=service)
