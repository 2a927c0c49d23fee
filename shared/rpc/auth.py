"""Who may call what: API keys with scopes, the suite's services by their certificates,
the operator listener, per-key rate limits and limits on streams.

Every RPC has a scope (:func:`scope_of`): storefront ``search``, ``recommend``,
``feedback``; operator ``catalog``, ``models``, ``experiments``, ``privacy``; ``internal``
for the calls the services make of each other (Classify, Retrieve, Rank, ...). A caller is
(:func:`principal_of`):

- a service of the suite when its verified client certificate names ``shopsense-<service>``
  (``shared.rpc.tls.peer_service``): every scope, no rate limit (the services run our code
  and call each other's operator RPCs: recommend reads ExportCatalog, the trainer starts
  ReindexCatalog, the gateway reads ListModelVersions, feedback calls ForgetShopper);
- else the holder of the API key sent as ``authorization: Bearer <key>``: the key's scopes,
  its rate. A key may hold ``internal`` for setups without TLS (embedded with a keys file:
  give the services SHOPSENSE_API_KEY with every scope);
- else anonymous.

The rules (:func:`refusal`), first match wins: health is open; a storefront RPC on the
operator listener is PERMISSION_DENIED; an operator RPC on the main listener, when an
operator listener is configured, is PERMISSION_DENIED for all but services (it names the
listener's variable, so an operator who dialled the wrong port learns which one: the
listener is inside the cluster and the name is no secret); a service may call anything;
with a keys file, a call without a key or with an unknown one is UNAUTHENTICATED and a key
without the RPC's scope is PERMISSION_DENIED naming the scope; without a keys file but with
TLS, internal RPCs are for services only (PERMISSION_DENIED) and the rest open; with
neither (the embedded default) everything is allowed, as before.

Then, for a key: a token bucket per key and server (rate and burst from the key's entry,
else the settings) answers RESOURCE_EXHAUSTED with the delay after which a call will be
allowed, both as ``retry-delay`` trailing metadata (seconds, e.g. ``0.125s``) and as a
``google.rpc.RetryInfo`` in ``grpc-status-details-bin`` (what gRPC clients' retry
libraries read); a key may have so many streaming calls open at once; and a client stream
that sends nothing for ``SHOPSENSE_STREAM_IDLE_S`` is closed with DEADLINE_EXCEEDED
(whoever the caller).

The keys file (``SHOPSENSE_API_KEYS_FILE``, JSON) holds hashes, never keys::

    {"keys": [{"id": "storefront-web", "sha256": "<hex sha256 of the key>",
               "scopes": ["search", "recommend", "feedback"],
               "rate_per_s": 50, "burst": 100, "max_streams": 4}]}

``rate_per_s``, ``burst``, ``max_streams`` are optional. It is re-read when it changes
(checked at most once a second); a malformed new version is logged and the previous one
kept. ``python -m shared.rpc.auth new-key --id ID --scopes a,b`` prints a new key and its
entry.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import queue
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import structlog

from shared.errors import DeadlineExceeded
from shared.rpc.tls import peer_service

_log = structlog.get_logger("shopsense.rpc")

SEARCH, RECOMMEND, FEEDBACK = "search", "recommend", "feedback"
CATALOG, MODELS, EXPERIMENTS, PRIVACY = "catalog", "models", "experiments", "privacy"
INTERNAL = "internal"
STOREFRONT_SCOPES = frozenset({SEARCH, RECOMMEND, FEEDBACK})
OPERATOR_SCOPES = frozenset({CATALOG, MODELS, EXPERIMENTS, PRIVACY})
ALL_SCOPES = STOREFRONT_SCOPES | OPERATOR_SCOPES | {INTERNAL}
# Any authenticated caller (reflection: what the API looks like is no secret to them).
ANY_CALLER = ""
AUTHORIZATION_KEY = "authorization"
RETRY_DELAY_KEY = "retry-delay"
STATUS_DETAILS_KEY = "grpc-status-details-bin"

# Scopes by gRPC service, then method; a method not named takes the service's "*".
_SCOPES: dict[str, dict[str, str]] = {
    "shopsense.search.v1.SearchService": {"*": SEARCH},
    "shopsense.recommend.v1.RecommendService": {
        "Recommend": RECOMMEND,
        "GetRecommenderStats": INTERNAL,
        "ForgetShopper": PRIVACY,
        "GetShopperProfile": PRIVACY,
    },
    "shopsense.feedback.v1.FeedbackService": {
        "RecordEvents": FEEDBACK,
        "StreamEvents": FEEDBACK,
        "ExportShopperEvents": PRIVACY,
        "DeleteShopperEvents": PRIVACY,
    },
    "shopsense.retrieval.v1.RetrievalService": {
        "Retrieve": INTERNAL,
        "GetProducts": INTERNAL,
        "GetCatalogStats": INTERNAL,
        "*": CATALOG,
    },
    "shopsense.trainer.v1.TrainerService": {"*": MODELS},
    "shopsense.experiments.v1.ExperimentService": {"*": EXPERIMENTS},
    "shopsense.intent.v1.IntentService": {"*": INTERNAL},
    "shopsense.ranking.v1.RankingService": {"*": INTERNAL},
    "grpc.reflection.v1alpha.ServerReflection": {"*": ANY_CALLER},
    "grpc.reflection.v1.ServerReflection": {"*": ANY_CALLER},
}
# Where one server's method differs: the recommend service's Recommend is the gateway's
# hop (the storefront calls the gateway's, which assigns the arm and signs attribution).
_SERVER_SCOPES: dict[tuple[str, str], str] = {
    ("recommend", "/shopsense.recommend.v1.RecommendService/Recommend"): INTERNAL,
}
HEALTH_SERVICE = "grpc.health.v1.Health"


def scope_of(method: str, server: str = "") -> str | None:
    """The scope ``method`` ("/package.Service/Method") needs on ``server``; None for the
    health service (always open); ``internal`` for a method no table names."""
    override = _SERVER_SCOPES.get((server, method))
    if override is not None:
        return override
    service, _, name = method.lstrip("/").rpartition("/")
    if service == HEALTH_SERVICE:
        return None
    table = _SCOPES.get(service, {})
    return table.get(name, table.get("*", INTERNAL))


def service_scopes(service_names: tuple[str, ...] | list[str], server: str = "") -> set[str]:
    """The scopes of every method of the given gRPC services (by their descriptors)."""
    from google.protobuf import descriptor_pool

    pool = descriptor_pool.Default()
    scopes: set[str] = set()
    for name in service_names:
        try:
            descriptor = pool.FindServiceByName(name)
        except KeyError:
            continue
        for method in descriptor.methods:
            scope = scope_of(f"/{name}/{method.name}", server)
            if scope:
                scopes.add(scope)
    return scopes


# API keys -------------------------------------------------------------------------------


def hash_key(key: str) -> str:
    """What the keys file stores of a key: its SHA-256, hex."""
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class ApiKey:
    """One entry of the keys file."""

    id: str
    sha256: str
    scopes: frozenset[str]
    rate_per_s: float | None = None
    burst: int | None = None
    max_streams: int | None = None


def _number(entry: Mapping[str, Any], name: str, where: str, low: float) -> Any:
    value = entry.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < low:
        raise ValueError(f"{where}.{name}: expected a number >= {low:g} (got {value!r})")
    return value


def parse_keys(text: str, source: str = "keys file") -> dict[str, ApiKey]:
    """The keys of a keys file by hash; ValueError names the entry and field at fault."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{source}: not JSON ({exc})") from None
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise ValueError(f'{source}: expected {{"keys": [...]}}')
    keys: dict[str, ApiKey] = {}
    for index, entry in enumerate(entries):
        where = f"{source}: keys[{index}]"
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: expected an object")
        key_id, digest, scopes = entry.get("id"), entry.get("sha256"), entry.get("scopes")
        if not isinstance(key_id, str) or not key_id:
            raise ValueError(f"{where}.id: expected a non-empty string")
        where = f"{source}: key {key_id!r}"
        if not isinstance(digest, str) or len(digest) != 64 or not _is_hex(digest):
            raise ValueError(f"{where}.sha256: expected 64 hex digits (the key's SHA-256)")
        if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
            raise ValueError(f"{where}.scopes: expected a list of scope names")
        unknown = sorted(set(scopes) - ALL_SCOPES)
        if unknown:
            raise ValueError(
                f"{where}.scopes: unknown scope {unknown[0]!r} (known: {', '.join(sorted(ALL_SCOPES))})"
            )
        if digest.lower() in keys:
            raise ValueError(f"{where}: the same key as {keys[digest.lower()].id!r}")
        rate = _number(entry, "rate_per_s", where, 0)
        burst = _number(entry, "burst", where, 1)
        streams = _number(entry, "max_streams", where, 1)
        keys[digest.lower()] = ApiKey(
            key_id,
            digest.lower(),
            frozenset(scopes),
            None if rate is None else float(rate),
            None if burst is None else int(burst),
            None if streams is None else int(streams),
        )
    return keys


def _is_hex(text: str) -> bool:
    try:
        int(text, 16)
    except ValueError:
        return False
    return True


class KeyStore:
    """The keys file, re-read when it changes (checked at most every ``check_s``)."""

    def __init__(self, path: Path, check_s: float = 1.0) -> None:
        self._path = path
        self._check_s = check_s
        self._lock = threading.Lock()
        # Raises (the server refuses to start) when the first read fails.
        self._stamp = self._stat()
        self._keys = parse_keys(path.read_text(), str(path))
        self._checked = time.monotonic()

    def _stat(self) -> tuple[int, int, int]:
        stat = self._path.stat()
        return stat.st_mtime_ns, stat.st_size, stat.st_ino

    def lookup(self, key: str) -> ApiKey | None:
        """The entry of the key presented, or None for an unknown one."""
        self._refresh()
        return self._keys.get(hash_key(key))

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked < self._check_s:
            return
        with self._lock:
            if now - self._checked < self._check_s:
                return
            self._checked = now
            try:
                stamp = self._stat()
                if stamp == self._stamp:
                    return
                keys = parse_keys(self._path.read_text(), str(self._path))
            except (OSError, ValueError) as exc:
                _log.warning("api_keys_reload_failed", error=str(exc))
                return
            self._keys, self._stamp = keys, stamp
            _log.info("api_keys_reloaded", keys=len(keys))


# Callers --------------------------------------------------------------------------------

SERVICE, KEY, ANONYMOUS = "service", "key", "anonymous"


@dataclass(frozen=True)
class Principal:
    """Who is calling: a service (by certificate), a key's holder, or nobody known."""

    kind: str
    name: str = ""
    scopes: frozenset[str] = frozenset()
    key: ApiKey | None = None


def bearer_of(metadata: Any) -> str | None:
    """The key of ``authorization: Bearer <key>``; "" for a malformed header; None without."""
    for name, value in metadata or ():
        if name == AUTHORIZATION_KEY:
            scheme, _, key = str(value).partition(" ")
            return key.strip() if scheme.lower() == "bearer" else ""
    return None


# Listener roles: a server without an operator listener serves everything on its one
# listener (ALL); with one, MAIN and OPERATOR split the RPCs.
ALL, MAIN, OPERATOR = "all", "main", "operator"


@dataclass(frozen=True)
class Refusal:
    code: grpc.StatusCode
    message: str


def refusal(
    method: str,
    scope: str | None,
    principal: Principal,
    *,
    role: str = ALL,
    keys_required: bool = False,
    tls: bool = False,
    operator_variable: str = "",
    unknown_key: bool = False,
) -> Refusal | None:
    """Why this call is refused, or None when it may go on (the module docstring's rules)."""
    denied, unauthenticated = grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED
    if scope is None:
        return None
    if role == OPERATOR and scope in STOREFRONT_SCOPES:
        return Refusal(
            denied, f"{method} is a storefront RPC: call the main listener, not the operator one"
        )
    if role == MAIN and scope in OPERATOR_SCOPES and principal.kind != SERVICE:
        return Refusal(
            denied,
            f"{method} (scope {scope}) is served on the operator listener only "
            f"({operator_variable or 'the operator port'})",
        )
    if principal.kind == SERVICE:
        return None
    if keys_required:
        if unknown_key:
            return Refusal(unauthenticated, "authorization: unknown API key")
        if principal.kind == ANONYMOUS:
            return Refusal(
                unauthenticated,
                "authorization: missing API key (send metadata authorization: Bearer <key>)",
            )
        if scope != ANY_CALLER and scope not in principal.scopes:
            have = ", ".join(sorted(principal.scopes)) or "none"
            return Refusal(
                denied,
                f"{method} needs scope {scope!r}; API key {principal.name!r} has: {have}",
            )
        return None
    if tls and scope == INTERNAL:
        return Refusal(
            denied,
            f"{method} is internal: only the suite's services (a client certificate naming "
            "shopsense-<service>) may call it",
        )
    return None


# Rate and stream limits -----------------------------------------------------------------


@dataclass
class TokenBucket:
    """``rate`` tokens a second up to ``burst``; a call takes one."""

    rate: float
    burst: int
    tokens: float = -1.0
    updated: float = 0.0

    def take(self, now: float) -> float:
        """0 when a token was taken, else the seconds until one is there."""
        if self.tokens < 0:
            self.tokens, self.updated = float(self.burst), now
        self.tokens = min(float(self.burst), self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


@dataclass(frozen=True)
class Limits:
    """The defaults of keys whose entries set none, and the idle limit of client streams."""

    rate_per_s: float = 100.0
    burst: int = 200
    max_streams: int = 8
    stream_idle_s: float = 300.0


@dataclass
class KeyLimiter:
    """Token buckets and open-stream counts by key, shared by a server's listeners."""

    limits: Limits = field(default_factory=Limits)
    clock: Callable[[], float] = time.monotonic
    _buckets: dict[str, TokenBucket] = field(default_factory=dict)
    _streams: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _rate(self, key: ApiKey) -> tuple[float, int]:
        rate = self.limits.rate_per_s if key.rate_per_s is None else key.rate_per_s
        return rate, self.limits.burst if key.burst is None else key.burst

    def take(self, key: ApiKey) -> float:
        """0 when the key may call now, else the seconds to wait."""
        rate, burst = self._rate(key)
        if rate <= 0:
            return 0.0
        with self._lock:
            bucket = self._buckets.get(key.id)
            if bucket is None or (bucket.rate, bucket.burst) != (rate, burst):
                bucket = self._buckets[key.id] = TokenBucket(rate, burst)
            return bucket.take(self.clock())

    def open_stream(self, key: ApiKey) -> Callable[[], None] | None:
        """A release function when the key may open another stream, else None."""
        limit = self.limits.max_streams if key.max_streams is None else key.max_streams
        with self._lock:
            if self._streams.get(key.id, 0) >= limit:
                return None
            self._streams[key.id] = self._streams.get(key.id, 0) + 1
        released = threading.Event()

        def release() -> None:
            if released.is_set():
                return
            released.set()
            with self._lock:
                self._streams[key.id] -= 1

        return release

    def stream_limit(self, key: ApiKey) -> int:
        return self.limits.max_streams if key.max_streams is None else key.max_streams


_END = object()


class IdleLimitedStream:
    """A client stream whose consumer gets DeadlineExceeded when the client sends nothing
    for ``idle_s``. A reader thread moves messages through a queue of two, so the client
    is still held back by HTTP/2 flow control when the servicer is slow."""

    def __init__(self, source: Iterator[Any], idle_s: float, method: str) -> None:
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=2)
        self._idle_s = idle_s
        self._method = method
        self._closed = threading.Event()
        threading.Thread(
            target=self._read, args=(source,), name="stream-reader", daemon=True
        ).start()

    def _read(self, source: Iterator[Any]) -> None:
        try:
            for item in source:
                if not self._put(item):
                    return
        except Exception as exc:  # the call ended: pass it on as the servicer would see it
            self._put(exc)
            return
        self._put(_END)

    def _put(self, item: Any) -> bool:
        while not self._closed.is_set():
            try:
                self._queue.put(item, timeout=0.5)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> IdleLimitedStream:
        return self

    def __next__(self) -> Any:
        try:
            item = self._queue.get(timeout=self._idle_s)
        except queue.Empty:
            self._closed.set()
            raise DeadlineExceeded(
                f"{self._method}: no message for {self._idle_s:g} s (SHOPSENSE_STREAM_IDLE_S); "
                "the stream is closed, open a new one"
            ) from None
        if item is _END:
            self._closed.set()
            raise StopIteration
        if isinstance(item, Exception):
            self._closed.set()
            raise item
        return item

    def close(self) -> None:
        self._closed.set()


def _retry_details(code: grpc.StatusCode, message: str, delay_s: float) -> bytes:
    """A google.rpc.Status with a RetryInfo, serialised for grpc-status-details-bin."""
    from google.protobuf import any_pb2, duration_pb2
    from google.rpc import error_details_pb2, status_pb2

    seconds = int(delay_s)
    retry = error_details_pb2.RetryInfo(
        retry_delay=duration_pb2.Duration(seconds=seconds, nanos=int((delay_s - seconds) * 1e9))
    )
    detail = any_pb2.Any()
    detail.Pack(retry)
    return status_pb2.Status(
        code=code.value[0], message=message, details=[detail]
    ).SerializeToString()


def retry_delay_of(metadata: Any) -> float | None:
    """The ``retry-delay`` of a refusal's trailing metadata, seconds (clients, tests)."""
    for name, value in metadata or ():
        if name == RETRY_DELAY_KEY:
            return float(str(value).rstrip("s"))
    return None


# The interceptor ------------------------------------------------------------------------


@dataclass(frozen=True)
class AuthPolicy:
    """What one server enforces (built by ``shared.rpc.server`` from its settings)."""

    server: str
    keys: KeyStore | None = None
    tls: bool = False
    operator_variable: str = ""
    limiter: KeyLimiter = field(default_factory=KeyLimiter)


class AuthInterceptor(grpc.ServerInterceptor):
    """Authenticates, authorises and rate-limits every call of one listener; the last of a
    server's interceptors, so a refusal is answered before the handler's work and counted
    and timed by the shared interceptor around it."""

    def __init__(self, policy: AuthPolicy, role: str = ALL) -> None:
        self._policy = policy
        self._role = role

    def principal(self, context: grpc.ServicerContext) -> tuple[Principal, bool]:
        """The caller, and whether it presented a key that no entry has."""
        service = peer_service(context) if self._policy.tls else ""
        if service:
            return Principal(SERVICE, service, ALL_SCOPES), False
        keys = self._policy.keys
        presented = bearer_of(context.invocation_metadata())
        if keys is None or presented is None:
            return Principal(ANONYMOUS), False
        entry = keys.lookup(presented) if presented else None
        if entry is None:
            return Principal(ANONYMOUS), True
        return Principal(KEY, entry.id, entry.scopes, entry), False

    def _check(self, method: str, scope: str | None, context: grpc.ServicerContext) -> Principal:
        """The caller when the call may go on; else aborts the call with the refusal."""
        principal, unknown = self.principal(context)
        policy = self._policy
        refused = refusal(
            method,
            scope,
            principal,
            role=self._role,
            keys_required=policy.keys is not None,
            tls=policy.tls,
            operator_variable=policy.operator_variable,
            unknown_key=unknown,
        )
        if refused is not None:
            _log.info("rpc_refused", method=method, code=refused.code.name, caller=principal.name)
            context.abort(refused.code, refused.message)
        if principal.key is not None:
            delay = policy.limiter.take(principal.key)
            if delay > 0:
                rate, burst = policy.limiter._rate(principal.key)
                message = (
                    f"rate limit of API key {principal.name!r} ({rate:g} calls/s, burst "
                    f"{burst}): retry in {delay:.3f} s"
                )
                code = grpc.StatusCode.RESOURCE_EXHAUSTED
                _log.info("rpc_refused", method=method, code=code.name, caller=principal.name)
                context.set_trailing_metadata(
                    (
                        (RETRY_DELAY_KEY, f"{delay:.3f}s"),
                        (STATUS_DETAILS_KEY, _retry_details(code, message, delay)),
                    )
                )
                context.abort(code, message)
        return principal

    def _open_stream(
        self, principal: Principal, method: str, context: grpc.ServicerContext
    ) -> None:
        """Count a key's stream until the call ends; RESOURCE_EXHAUSTED over its limit."""
        if principal.key is None:
            return
        release = self._policy.limiter.open_stream(principal.key)
        if release is None:
            limit = self._policy.limiter.stream_limit(principal.key)
            _log.info(
                "rpc_refused", method=method, code="RESOURCE_EXHAUSTED", caller=principal.name
            )
            context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"{method}: API key {principal.name!r} has {limit} streams open, its limit; "
                "close one first",
            )
        context.add_callback(release)

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Any],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        scope = scope_of(method, self._policy.server)
        if handler is None or scope is None:
            return handler
        idle_s = self._policy.limiter.limits.stream_idle_s
        streaming = handler.request_streaming or handler.response_streaming

        def guarded(request: Any, context: grpc.ServicerContext) -> tuple[Any, Principal]:
            # The shared interceptor, outside this one, has bound the call's request id.
            principal = self._check(method, scope, context)
            if streaming:
                self._open_stream(principal, method, context)
            if handler.request_streaming and idle_s > 0:
                request = IdleLimitedStream(request, idle_s, method)
                context.add_callback(request.close)
            return request, principal

        def unary_response(behavior: Callable[..., Any]) -> Callable[..., Any]:
            def call(request: Any, context: grpc.ServicerContext) -> Any:
                request, _ = guarded(request, context)
                return behavior(request, context)

            return call

        def stream_response(behavior: Callable[..., Any]) -> Callable[..., Any]:
            def call(request: Any, context: grpc.ServicerContext) -> Any:
                request, _ = guarded(request, context)
                yield from behavior(request, context)

            return call

        kinds = (
            (handler.unary_unary, grpc.unary_unary_rpc_method_handler, unary_response),
            (handler.stream_unary, grpc.stream_unary_rpc_method_handler, unary_response),
            (handler.unary_stream, grpc.unary_stream_rpc_method_handler, stream_response),
            (handler.stream_stream, grpc.stream_stream_rpc_method_handler, stream_response),
        )
        for behavior, make, wrap in kinds:
            if behavior:
                return make(
                    wrap(behavior),
                    request_deserializer=handler.request_deserializer,
                    response_serializer=handler.response_serializer,
                )
        return handler


# Keys for the operator ------------------------------------------------------------------


def new_key_entry(key_id: str, scopes: list[str]) -> tuple[str, dict[str, Any]]:
    """A new random key and its keys-file entry."""
    unknown = sorted(set(scopes) - ALL_SCOPES)
    if unknown:
        raise ValueError(f"unknown scope {unknown[0]!r} (known: {', '.join(sorted(ALL_SCOPES))})")
    key = "sk_" + secrets.token_urlsafe(32)
    return key, {"id": key_id, "sha256": hash_key(key), "scopes": sorted(scopes)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="API keys of the suite")
    commands = parser.add_subparsers(dest="command", required=True)
    new = commands.add_parser("new-key", help="print a new key and its keys-file entry")
    new.add_argument("--id", required=True, help="the key's name (logs, refusals)")
    new.add_argument("--scopes", required=True, help="comma-separated scopes")
    args = parser.parse_args(argv)
    key, entry = new_key_entry(args.id, [s.strip() for s in args.scopes.split(",") if s.strip()])
    print(f"key (give it to the caller, SHOPSENSE_API_KEY; it is not stored): {key}")
    print(f"entry for SHOPSENSE_API_KEYS_FILE: {json.dumps(entry)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
