"""Shoppers in the logs: never their ids or their queries, a keyed tag instead.

A call that serves a shopper binds :func:`shopper_tag` as ``shopper`` into the logging
context, so every line of the call carries it: an operator follows one shopper's lines
(and, with SHOPSENSE_LOG_KEY shared, across services and replicas) without learning who it
is. The tag is the first 12 hex digits of HMAC-SHA256 under the log key: without the key,
a guessed id cannot be checked against it. No key configured: a random one per process.

The raw ids and the query are also registered for the call (:func:`bind_shopper`,
:func:`bind_query`), and :func:`redact`, a structlog processor, replaces them wherever they
would appear in a line: an error message passed on from another service, an exception's
text. No log call names them today; this keeps a future one from leaking them.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, MutableMapping
from typing import Any

import structlog

TAG_HEX = 12
REDACTED = "[redacted]"
# Bound in the logging context, never rendered: redact() pops it.
_SENSITIVE = "_sensitive"
# What the processor never rewrites: the line's own vocabulary, not shopper input.
_KEEP = frozenset({"event", "level", "timestamp", "service", "request_id", "shopper", "method"})
# The per-process key, replaced by set_log_key() when SHOPSENSE_LOG_KEY is set.
_key = secrets.token_bytes(32)


class _Sensitive(tuple[str, ...]):
    """The call's values to redact. Shown as ``[redacted]`` wherever a renderer other than
    the configured one (structlog's defaults, a test's capture) prints the context."""

    def __repr__(self) -> str:
        return REDACTED

    __str__ = __repr__


def set_log_key(key: str) -> None:
    """Tag shoppers with ``key`` (SHOPSENSE_LOG_KEY); "" keeps the random per-process key."""
    global _key
    if key:
        _key = key.encode("utf-8")


def shopper_tag(user_id: str, session_id: str = "") -> str:
    """12 hex digits naming the shopper in logs (the user id when given, else the session's);
    "" for no shopper."""
    name = f"u:{user_id}" if user_id else f"s:{session_id}" if session_id else ""
    if not name:
        return ""
    return hmac.new(_key, name.encode("utf-8"), hashlib.sha256).hexdigest()[:TAG_HEX]


def bind_shopper(user_id: str, session_id: str = "", query: str = "") -> None:
    """For the rest of the call: ``shopper`` = the tag on every line, and the ids (and the
    query) redacted from every line."""
    tag = shopper_tag(user_id, session_id)
    if tag:
        structlog.contextvars.bind_contextvars(shopper=tag)
    _register((user_id, session_id, query))


def bind_query(query: str) -> None:
    """For the rest of the call: the query redacted from every line."""
    _register((query,))


def _register(values: Iterable[str]) -> None:
    current = structlog.contextvars.get_contextvars().get(_SENSITIVE, ())
    added = tuple(v for v in values if v and v.strip() and v not in current)
    if added:
        structlog.contextvars.bind_contextvars(**{_SENSITIVE: _Sensitive((*current, *added))})


@functools.lru_cache(maxsize=256)
def _pattern(values: tuple[str, ...]) -> re.Pattern[str]:
    # Longest first, so a query holding the user id is redacted whole. Not inside a longer
    # word: a shopper "7" must not turn "17 events" into "1[redacted] events".
    alternatives = "|".join(re.escape(v) for v in sorted(values, key=len, reverse=True))
    return re.compile(rf"(?<![\w-])(?:{alternatives})(?![\w-])")


def _scrub(value: Any, values: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        # A substring test first: compiling the pattern cost 1.7 ms a line, and nearly every
        # line holds none of the values; so a line of a call with a shopper bound costs
        # 19 us (0.1 us without), against 100-200 us for rendering it (2 busy cores).
        if any(v in value for v in values):
            return _pattern(values).sub(REDACTED, value)
        return value
    if isinstance(value, dict):
        return {k: _scrub(v, values) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_scrub(v, values) for v in value)
    return value


def redact(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor (after the exception is formatted, before rendering): the call's
    shopper ids and query, wherever they appear, become ``[redacted]``."""
    values = tuple(event_dict.pop(_SENSITIVE, ()))
    if not values:
        return event_dict
    for key, value in event_dict.items():
        if key not in _KEEP:
            event_dict[key] = _scrub(value, values)
    return event_dict
