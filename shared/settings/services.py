"""Each service's settings, and the clients' (the command line, benchmarks, launcher).

Every service reads only its own record: the common base (listen address, workers, grace,
log level, message limit) plus what it uses. Paths default to files in the state folder
(``SHOPSENSE_STATE_DIR``), so moving the folder moves them all. Variables keep one meaning
wherever they are read: ``SHOPSENSE_RETRIEVAL_TARGET`` is where retrieval answers, for the
gateway, intent, feedback and the trainer alike.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from shared import paths
from shared.settings.base import (
    Settings,
    address,
    at_least,
    between,
    integer,
    number,
    one_of,
    option,
    path,
    record,
)
from shared.settings.keys import KEYS_ENV, TokenKeys

# Where each service listens by default (`make run`), and so where clients find it.
PORTS = {
    "gateway": 50051,
    "intent": 50052,
    "retrieval": 50053,
    "ranking": 50054,
    "feedback": 50055,
    "trainer": 50056,
    "recommend": 50057,
}
# A development-only secret: `make run` works out of the box, and the services that use it
# log a warning while it is in use; production refuses it (shared/settings/keys.py).
DEV_TOKEN_SECRET = "shopsense-dev-secret-change-me"
LOG_LEVELS = ("debug", "info", "warning", "error")
# SHOPSENSE_MODE: "embedded" is the one-machine default; "production" (Kubernetes) turns the
# development conveniences into errors at start.
EMBEDDED, PRODUCTION = "embedded", "production"
MODES = (EMBEDDED, PRODUCTION)
KIB, MIB = 1024, 1024 * 1024
# A service's /metrics listens, by default, on its gRPC port + this on the same host
# (gateway 51051 ... recommend 51057 under `make run`); Kubernetes sets 0.0.0.0:9090.
METRICS_PORT_OFFSET = 1000
METRICS_OFF = "off"


def _target(service: str) -> Any:
    return option(
        f"SHOPSENSE_{service.upper()}_TARGET",
        f"127.0.0.1:{PORTS[service]}",
        f"where the {service} service answers, host:port",
        check=address,
    )


def _triton_url() -> Any:
    return option(
        "SHOPSENSE_TRITON_URL", "127.0.0.1:8001", "Triton's gRPC endpoint, host:port", check=address
    )


def _text_encoder_version() -> Any:
    return option(
        "SHOPSENSE_TEXT_ENCODER_VERSION",
        "",
        'text_encoder version to ask Triton for before the catalog names one; "" = its newest',
    )


def _state_dir() -> Any:
    return option(
        "SHOPSENSE_STATE_DIR",
        paths.DEFAULT_STATE_DIR,
        "folder of the databases, indexes, training runs and logs",
        parse=path,
    )


def _in_state(name: str) -> Any:
    return lambda values, _cls: values["state_dir"] / name


def _sqlite_in_state(name: str) -> Any:
    return lambda values, _cls: f"sqlite:///{values['state_dir'] / name}"


def _optional_address(value: str) -> str | None:
    """ "" (not set) or a host:port."""
    return None if value == "" else address(value)


def _tls(which: str, file: str) -> Any:
    # One set of files for a process: its server certificate is also its client certificate
    # (mutual TLS between services); clients (the command line) read the same variables.
    return option(
        f"SHOPSENSE_TLS_{which}",
        "",
        f"{file} (PEM file path); with the other two: TLS on every listener and channel, "
        "client certificates required and checked; all three empty: plaintext (embedded only)",
    )


def _token_secret() -> Any:
    return option(
        "SHOPSENSE_TOKEN_SECRET",
        DEV_TOKEN_SECRET,
        f"one-key shorthand of {KEYS_ENV} (key id 'default'); the default is for development only",
        secret=True,
    )


def _token_keys() -> Any:
    return option(
        KEYS_ENV,
        lambda values, _cls: TokenKeys.single(values["token_secret"]),
        "keys of attribution and page tokens, kid:secret,...: the first signs, all verify "
        "(rotation: new key first, drop the old one after the attribution window)",
        parse=TokenKeys.parse,
        secret=True,
        derived_from="token_secret",
    )


def token_keys_problem(settings: GatewaySettings | FeedbackSettings) -> str | None:
    """Why ``settings``' token keys must not be used, naming the variable (production: the
    development secret or a short one); None when they may."""
    if not settings.production:
        return None
    return settings.token_keys.production_problem(DEV_TOKEN_SECRET)


def uses_dev_token_secret(settings: GatewaySettings | FeedbackSettings) -> bool:
    return any(secret == DEV_TOKEN_SECRET for _, secret in settings.token_keys.keys)


def _metrics_beside(values: Any, _cls: Any) -> str:
    """The gRPC listen address with its port + METRICS_PORT_OFFSET (port 0 stays 0, so
    servers started on free ports in tests never collide on their metrics port)."""
    host, _, port = str(values["listen"]).rpartition(":")
    return f"{host}:{int(port) + METRICS_PORT_OFFSET if int(port) else 0}"


def _address_or_off(value: str) -> str | None:
    return None if value == METRICS_OFF else address(value)


@record
class ServiceSettings(Settings):
    """What every server reads; a subclass sets NAME, its default port and message limit."""

    # The largest request the server accepts, bytes, unless SHOPSENSE_<NAME>_MAX_MESSAGE_BYTES
    # says otherwise: a larger one is refused (RESOURCE_EXHAUSTED) before it is parsed.
    MAX_MESSAGE_BYTES: ClassVar[int] = 4 * MIB

    mode: str = option(
        "SHOPSENSE_MODE",
        "embedded",
        "embedded: one machine, plaintext, development secrets allowed (make run); "
        "production: TLS, API keys and real secrets required, or the service refuses to start",
        check=one_of(*MODES),
    )
    listen: str = option(
        "SHOPSENSE_{SERVICE}_LISTEN",
        lambda _values, cls: f"127.0.0.1:{PORTS[cls.NAME]}",
        "address the server binds, host:port; port 0 picks a free one",
        check=address,
    )
    grpc_workers: int = option(
        "SHOPSENSE_GRPC_WORKERS", 16, "gRPC worker threads", parse=integer, check=at_least(1)
    )
    shutdown_grace_s: float = option(
        "SHOPSENSE_SHUTDOWN_GRACE_S",
        5.0,
        "seconds a stopping server lets in-flight calls finish",
        parse=number,
        check=at_least(0),
    )
    log_level: str = option(
        "SHOPSENSE_LOG_LEVEL", "info", "log level (JSON lines on stderr)", check=one_of(*LOG_LEVELS)
    )
    log_key: str = option(
        "SHOPSENSE_LOG_KEY",
        "",
        "HMAC key of the shopper tags in logs (ids and queries are never logged); the same "
        "key in every service tags a shopper alike; empty: a random key per process",
        secret=True,
    )
    max_message_bytes: int = option(
        "SHOPSENSE_{SERVICE}_MAX_MESSAGE_BYTES",
        lambda _values, cls: cls.MAX_MESSAGE_BYTES,
        "largest request accepted, bytes (larger: RESOURCE_EXHAUSTED)",
        parse=integer,
        check=at_least(KIB),
    )
    metrics_listen: str = option(
        "SHOPSENSE_{SERVICE}_METRICS_LISTEN",
        _metrics_beside,
        "address of the HTTP /metrics endpoint (Prometheus text), host:port, or off; "
        f"default: the gRPC listen address with its port + {METRICS_PORT_OFFSET} (0 stays 0)",
        check=_address_or_off,
        derived_from="listen",
    )
    otlp_endpoint: str = option(
        "SHOPSENSE_OTLP_ENDPOINT",
        "",
        'OpenTelemetry collector receiving traces by OTLP/gRPC, host:port; "" = tracing off',
    )
    trace_sample_ratio: float = option(
        "SHOPSENSE_TRACE_SAMPLE_RATIO",
        1.0,
        "share of searches traced when tracing is on (decided at the gateway, followed downstream)",
        parse=number,
        check=between(0, 1),
    )
    # Security (shared/rpc/tls.py, shared/rpc/auth.py; README section Security).
    tls_cert: str = _tls("CERT", "this process's certificate chain")
    tls_key: str = _tls("KEY", "the certificate's private key")
    tls_ca: str = _tls("CA", "the CA bundle that peers' certificates must chain to")
    api_keys_file: str = option(
        "SHOPSENSE_API_KEYS_FILE",
        "",
        "JSON file of API keys (id, sha256 of the key, scopes, rate); re-read when it changes; "
        '"" = no keys: every caller allowed (embedded only)',
    )
    operator_listen: str = option(
        "SHOPSENSE_{SERVICE}_OPERATOR_LISTEN",
        "",
        "address of the operator listener, host:port; when set, operator RPCs (catalog, "
        'models, experiments, privacy) are served there only; "" = on the main listener',
        check=_optional_address,
    )
    health_listen: str = option(
        "SHOPSENSE_{SERVICE}_HEALTH_LISTEN",
        "",
        'plaintext listener with the health service only (Kubernetes gRPC probes); "" = none',
        check=_optional_address,
    )
    rate_limit_per_s: float = option(
        "SHOPSENSE_RATE_LIMIT_PER_S",
        100.0,
        "requests per second an API key may make of one server (token bucket) unless its "
        "entry says otherwise; 0: unlimited",
        parse=number,
        check=at_least(0),
    )
    rate_limit_burst: int = option(
        "SHOPSENSE_RATE_LIMIT_BURST",
        200,
        "requests an API key may make at once (the bucket's size) unless its entry says otherwise",
        parse=integer,
        check=at_least(1),
    )
    max_streams_per_key: int = option(
        "SHOPSENSE_MAX_STREAMS_PER_KEY",
        8,
        "streaming calls an API key may have open on one server at once unless its entry "
        "says otherwise",
        parse=integer,
        check=at_least(1),
    )
    stream_idle_s: float = option(
        "SHOPSENSE_STREAM_IDLE_S",
        300.0,
        "a client stream (StreamEvents, UpsertProducts) that sends nothing for this long is "
        "closed (DEADLINE_EXCEEDED), seconds; 0: never",
        parse=number,
        check=at_least(0),
    )
    max_concurrent_streams: int = option(
        "SHOPSENSE_MAX_CONCURRENT_STREAMS",
        100,
        "calls one client connection may have in flight at once (HTTP/2 "
        "grpc.max_concurrent_streams); more wait for a free one",
        parse=integer,
        check=at_least(1),
    )
    max_connection_idle_s: float = option(
        "SHOPSENSE_MAX_CONNECTION_IDLE_S",
        0.0,
        "a client connection with no call for this long is closed (GOAWAY; the client "
        "reconnects on its next call), seconds; 0: never",
        parse=number,
        check=at_least(0),
    )

    @property
    def production(self) -> bool:
        """Whether this service runs in production mode (SHOPSENSE_MODE=production)."""
        return self.mode == PRODUCTION

    def shared_database_problems(self) -> list[str]:
        """In production, each database URL (``*_db_url``) that is a SQLite file, named by
        its variable: every replica would hold a store of its own, so a write through one
        pod would never reach the others. [] in the embedded mode."""
        if not self.production:
            return []
        return [
            f"{self.env_name(opt)}: production needs the database every {self.NAME} replica "
            f"shares (postgresql+psycopg://...), got {getattr(self, name)!r}"
            for name, opt in self.options()
            if name.endswith("_db_url") and str(getattr(self, name)).startswith("sqlite")
        ]


@record
class GatewaySettings(ServiceSettings):
    NAME = "gateway"
    # The public API: a search request is a query, a shopper, filters and a page; a
    # recommendation request may carry 10,000 history events (1.5 MB with 128-character ids).
    MAX_MESSAGE_BYTES = 2 * MIB

    triton_url: str = _triton_url()
    text_encoder_version: str = _text_encoder_version()
    intent_target: str = _target("intent")
    retrieval_target: str = _target("retrieval")
    ranking_target: str = _target("ranking")
    trainer_target: str = _target("trainer")
    recommend_target: str = _target("recommend")
    token_secret: str = _token_secret()
    token_keys: TokenKeys = _token_keys()
    search_deadline_s: float = option(
        "SHOPSENSE_SEARCH_DEADLINE_S",
        2.0,
        "deadline of a search whose caller sets none, seconds",
        parse=number,
        check=at_least(0.001),
    )
    intent_budget: float = option(
        "SHOPSENSE_INTENT_BUDGET",
        0.25,
        "share of the remaining deadline intent may use",
        parse=number,
        check=between(0.01, 1),
    )
    ranking_budget: float = option(
        "SHOPSENSE_RANKING_BUDGET",
        0.85,
        "share of the remaining deadline ranking may use (the last hop: the rest is the "
        "gateway's time to answer in retrieval order when ranking is late)",
        parse=number,
        check=between(0.01, 1),
    )
    # 200 bought +0.0003 nDCG@10 on a synthetic dev store for twice the bytes on every hop.
    candidates: int = option(
        "SHOPSENSE_CANDIDATES",
        100,
        "candidates asked of retrieval and ordered by ranking (more when a page needs them)",
        parse=integer,
        check=between(1, 1000),
    )
    result_cache_entries: int = option(
        "SHOPSENSE_RESULT_CACHE_ENTRIES",
        2000,
        "ranked results of repeated searches kept (least recently used out first); 0: none",
        parse=integer,
        check=between(0, 1_000_000),
    )
    result_cache_ttl_s: float = option(
        "SHOPSENSE_RESULT_CACHE_TTL_S",
        60.0,
        "how long a search's ranked results are served again, at most, seconds",
        parse=number,
        check=at_least(0.001),
    )
    refresh_s: float = option(
        "SHOPSENSE_GATEWAY_REFRESH_S",
        5.0,
        "how often the serving versions, the running experiment and the catalog's "
        "generation are re-read, seconds",
        parse=number,
        check=at_least(0.05),
    )
    explore_rate: float = option(
        "SHOPSENSE_EXPLORE_RATE",
        0.05,
        "share of searches whose top results are shuffled to measure position bias; 0: none",
        parse=number,
        check=between(0, 1),
    )
    explore_depth: int = option(
        "SHOPSENSE_EXPLORE_DEPTH",
        10,
        "how many top results an explored search shuffles",
        parse=integer,
        check=between(2, 100),
    )
    guard_max_error_rate: float = option(
        "SHOPSENSE_GUARD_MAX_ERROR_RATE",
        0.05,
        "guard rail: share of an arm's last 1,000 searches its own models may fail or degrade",
        parse=number,
        check=between(0, 1),
    )
    guard_max_p99_ms: float = option(
        "SHOPSENSE_GUARD_MAX_P99_MS",
        2000.0,
        "guard rail: an arm's p99 latency limit, ms; 0: off",
        parse=number,
        check=at_least(0),
    )
    guard_min_searches: int = option(
        "SHOPSENSE_GUARD_MIN_SEARCHES",
        100,
        "guard rail: searches an arm (and its control) needs before it is judged",
        parse=integer,
        check=at_least(1),
    )
    # Off by default: it changes known shoppers' results on evidence from SYNTHETIC shoppers
    # only; an experiment arm turns it on (pipeline.personalize) to measure it first.
    personalize: str = option(
        "SHOPSENSE_PERSONALIZE",
        "off",
        "personalised search (the shopper's profile as a ranking feature): on or off; an "
        "experiment arm's pipeline.personalize overrides it",
        check=one_of("on", "off"),
    )
    profile_budget: float = option(
        "SHOPSENSE_PROFILE_BUDGET",
        0.25,
        "share of the deadline the shopper's profile may take (fetched beside intent and "
        "retrieval); then the search goes on unpersonalised",
        parse=number,
        check=between(0.01, 1),
    )


@record
class IntentSettings(ServiceSettings):
    NAME = "intent"
    # A query and its embedding.
    MAX_MESSAGE_BYTES = 64 * KIB

    triton_url: str = _triton_url()
    text_encoder_version: str = _text_encoder_version()
    retrieval_target: str = _target("retrieval")
    taxonomy_path: Any = option(
        "SHOPSENSE_TAXONOMY",
        lambda _values, _cls: paths.shared_data_dir() / "wands" / "classes.txt",
        "the store's class taxonomy, one class a line (zero-shot prototypes use the names)",
        parse=path,
    )
    refresh_s: float = option(
        "SHOPSENSE_INTENT_REFRESH_S",
        5.0,
        "how often the catalog's class statistics and the classifier are re-read, seconds",
        parse=number,
        check=at_least(0.05),
    )


@record
class RetrievalSettings(ServiceSettings):
    NAME = "retrieval"
    # UpsertProducts: up to 1,000 products a message, with their descriptions.
    MAX_MESSAGE_BYTES = 16 * MIB

    triton_url: str = _triton_url()
    text_encoder_version: str = _text_encoder_version()
    state_dir: Any = _state_dir()
    catalog_db_url: str = option(
        "SHOPSENSE_CATALOG_DB_URL",
        _sqlite_in_state("catalog.db"),
        "the catalog store, any SQLAlchemy URL (postgresql+psycopg://... shared by every "
        "retrieval replica in production)",
        derived_from="state_dir",
    )
    # 1 s: an upsert through one replica is served by the others within about this much
    # (measured in tests/integration/test_retrieval_replicas.py); a poll that finds nothing
    # new costs one indexed SELECT.
    follow_s: float = option(
        "SHOPSENSE_RETRIEVAL_FOLLOW_S",
        1.0,
        "how often the catalog's change log is polled for other replicas' writes, seconds",
        parse=number,
        check=between(0.05, 60),
    )
    ann_threshold: int = option(
        "SHOPSENSE_RETRIEVAL_ANN_THRESHOLD",
        200_000,  # shared.search.vectors.ANN_THRESHOLD (settings import nothing above them)
        "products from which the in-process dense search gets an HNSW graph (built in the "
        "background; exact below it and until the graph is attached)",
        parse=integer,
        check=between(1_000, 1_000_000_000),
    )
    backend: str = option(
        "SHOPSENSE_RETRIEVAL_BACKEND",
        "memory",
        "where the BM25 and dense searches run: memory (in process, exact) or milvus "
        "(SHOPSENSE_MILVUS_URI)",
        check=one_of("memory", "milvus"),
    )
    milvus_uri: str = option(
        "SHOPSENSE_MILVUS_URI",
        lambda values, _cls: str(values["state_dir"] / "milvus" / "retrieval.db"),
        "the milvus backend's engine: a milvus-lite file (embedded, one process at a time) or "
        "a Milvus server's http(s):// address, shared by every replica",
        derived_from="state_dir",
    )
    milvus_collection: str = option(
        "SHOPSENSE_MILVUS_COLLECTION",
        "shopsense_catalog",
        "the Milvus collections' name prefix (<prefix>_state names the served one)",
        check=lambda value: (
            None
            if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,200}", value)
            else f"letters, digits and _, not starting with a digit (got {value!r})"
        ),
    )
    milvus_token: str = option(
        "SHOPSENSE_MILVUS_TOKEN",
        "",
        "the Milvus server's token (user:password or an API key); empty: none",
        secret=True,
    )


@record
class RankingSettings(ServiceSettings):
    NAME = "ranking"
    # A query with up to 1,000 candidates (no descriptions).
    MAX_MESSAGE_BYTES = 8 * MIB

    triton_url: str = _triton_url()
    rerank_depth: int = option(
        "SHOPSENSE_RERANK_DEPTH",
        50,
        "candidates the cross-encoder rescores (the rest keep their feature order)",
        parse=integer,
        check=between(0, 200),
    )
    pair_max_tokens: int = option(
        "SHOPSENSE_PAIR_MAX_TOKENS",
        64,
        "tokens of a (query, product) pair the cross-encoder reads at most; fewer is faster",
        parse=integer,
        check=between(8, 512),
    )
    # Where the catalog's text vectors come from for the personal feature.
    retrieval_target: str = _target("retrieval")
    # Default: shared/ranking/personal.py (DEFAULT_PERSONAL_WEIGHT) says why.
    personal_weight: float = option(
        "SHOPSENSE_PERSONAL_WEIGHT",
        0.2,
        "weight of the personal feature (the candidate's likeness to the shopper's profile "
        "of taste vectors, scaled over the list) when a search is personalised",
        parse=number,
        check=between(0, 2),
    )
    refresh_s: float = option(
        "SHOPSENSE_RANKING_REFRESH_S",
        5.0,
        "how often the catalog's generation is checked once its vectors are held, seconds",
        parse=number,
        check=at_least(0.05),
    )


@record
class FeedbackSettings(ServiceSettings):
    NAME = "feedback"
    # RecordEvents: up to 10,000 events, each with an attribution token of up to 4,096 chars.
    MAX_MESSAGE_BYTES = 48 * MIB

    state_dir: Any = _state_dir()
    feedback_db_url: str = option(
        "SHOPSENSE_FEEDBACK_DB_URL",
        _sqlite_in_state("feedback.db"),
        "the feedback store, any SQLAlchemy URL (postgresql+psycopg://... in production)",
        derived_from="state_dir",
    )
    token_secret: str = _token_secret()
    token_keys: TokenKeys = _token_keys()
    retrieval_target: str = _target("retrieval")
    recommend_target: str = _target("recommend")
    attribution_window_s: float = option(
        "SHOPSENSE_ATTRIBUTION_WINDOW_S",
        604800.0,
        "how long after a search its feedback counts, seconds (7 days)",
        parse=number,
        check=at_least(1),
    )


@record
class RecommendSettings(ServiceSettings):
    NAME = "recommend"
    # A request with up to 10,000 history events.
    MAX_MESSAGE_BYTES = 4 * MIB

    state_dir: Any = _state_dir()
    feedback_db_url: str = option(
        "SHOPSENSE_FEEDBACK_DB_URL",
        _sqlite_in_state("feedback.db"),
        "the feedback store the recommender reads events from",
        derived_from="state_dir",
    )
    retrieval_target: str = _target("retrieval")
    # Triton, for the sequence_recommender ("" = no sequence source).
    triton_url: str = _triton_url()
    sequence_events: int = option(
        "SHOPSENSE_RECOMMEND_SEQUENCE_EVENTS",
        50,
        "most recent events of a shopper the sequence model reads (its history_length)",
        parse=integer,
        check=between(1, 512),
    )
    sequence_weight: float = option(
        "SHOPSENSE_RECOMMEND_SEQUENCE_WEIGHT",
        0.0,
        "RECOMMENDED_FOR_YOU's weight of the fine-tuned sequence model, 0 (off) to 10",
        parse=number,
        check=between(0, 10),
    )
    sequence_timeout_s: float = option(
        "SHOPSENSE_RECOMMEND_SEQUENCE_TIMEOUT_S",
        0.5,
        "how long a request waits for the sequence model before answering without it",
        parse=number,
        check=at_least(0.01),
    )
    refresh_s: float = option(
        "SHOPSENSE_RECOMMEND_REFRESH_S",
        2.0,
        "how often new feedback events and the catalog's generation are read, seconds",
        parse=number,
        check=at_least(0.05),
    )
    history_limit: int = option(
        "SHOPSENSE_RECOMMEND_HISTORY_LIMIT",
        1000,
        "most recent interactions of a shopper kept and used",
        parse=integer,
        check=between(1, 10000),
    )
    cooccurrence_half_life_days: float = option(
        "SHOPSENSE_RECOMMEND_COOCCURRENCE_HALF_LIFE_DAYS",
        60.0,
        "half-life of co-occurrence counts, days",
        parse=number,
        check=at_least(0.01),
    )
    diversity: float = option(
        "SHOPSENSE_RECOMMEND_DIVERSITY",
        0.0,
        "MMR's trade of relevance for variety in a list, 0 (off) to 1",
        parse=number,
        check=between(0, 1),
    )
    trending_half_life_days: float = option(
        "SHOPSENSE_RECOMMEND_TRENDING_HALF_LIFE_DAYS",
        7.0,
        "half-life of trending counts, days",
        parse=number,
        check=at_least(0.01),
    )
    blend_learning: str = option(
        "SHOPSENSE_RECOMMEND_BLEND_LEARNING",
        "off",
        "on: log served pages and learn each placement's blend from their impressions and "
        "clicks (position bias removed); off: the default weights",
        check=one_of("on", "off"),
    )
    blend_interval_s: float = option(
        "SHOPSENSE_RECOMMEND_BLEND_INTERVAL_S",
        300.0,
        "how often the blend is learned again when blend learning is on, seconds",
        parse=number,
        check=at_least(0.1),
    )
    blend_min_clicks: int = option(
        "SHOPSENSE_RECOMMEND_BLEND_MIN_CLICKS",
        200,
        "clicks on a placement's logged pages before its learned weights are used",
        parse=integer,
        check=at_least(1),
    )


@record
class TrainerSettings(ServiceSettings):
    NAME = "trainer"

    state_dir: Any = _state_dir()
    # Every Triton that must load a published version; "" = SHOPSENSE_TRITON_URL alone.
    triton_urls: str = option(
        "SHOPSENSE_TRITON_URLS",
        "",
        "every Triton the trainer loads published versions on: host:port entries, "
        "comma-separated, or dns:///name:port for every address of a headless Service "
        '(resolved at each publish); "" = SHOPSENSE_TRITON_URL',
        check=lambda value: next(
            (err for e in value.split(",") if e.strip() and (err := address(e.strip()))), None
        ),
    )
    registry_db_url: str = option(
        "SHOPSENSE_REGISTRY_DB_URL",
        _sqlite_in_state("registry.db"),
        "the model registry, training jobs and experiments, any SQLAlchemy URL",
        derived_from="state_dir",
    )
    feedback_db_url: str = option(
        "SHOPSENSE_FEEDBACK_DB_URL",
        _sqlite_in_state("feedback.db"),
        "the feedback store that reports and retraining read",
        derived_from="state_dir",
    )
    # Where request-named folders (StartTraining's dataset, SHOPSENSE_RETRAIN_CATALOG) must
    # lie: the demo's and `make train`'s stores are written in the state folder, the team's
    # real data is in the shared data folder.
    data_root: Any = option(
        paths.DATA_ROOT_ENV,
        lambda values, _cls: paths.DataRoots((paths.shared_data_dir(), values["state_dir"])),
        "folders the datasets a request names must lie under (no symbolic links below "
        "them), ':'-separated; default: the shared data folder and the state folder",
        parse=paths.parse_roots,
        derived_from="state_dir",
    )
    training_dir: Any = option(
        "SHOPSENSE_TRAINING_DIR",
        _in_state("training"),
        "training runs: checkpoints, exports, logs",
        parse=path,
        derived_from="state_dir",
    )
    erasure_interval_s: float = option(
        "SHOPSENSE_ERASURE_INTERVAL_S",
        60.0,
        "how often shoppers' erasures (feedback's DeleteShopperEvents) are applied to the "
        "training folders written from feedback, seconds (also at start and before a job)",
        parse=number,
        check=at_least(0.05),
    )
    triton_url: str = _triton_url()
    triton_models: Any = option(
        "SHOPSENSE_TRITON_MODELS",
        paths.DEFAULT_TRITON_MODELS,
        "Triton's model repository the trainer publishes into",
        parse=path,
    )
    retrieval_target: str = _target("retrieval")
    experiments_file: str = option(
        "SHOPSENSE_EXPERIMENTS_FILE", "", "TOML file of experiments to create at start; none"
    )
    guard_alpha: float = option(
        "SHOPSENSE_GUARD_ALPHA",
        0.001,
        "guard rail: p-value below which an arm's worse CTR or conversion stops the experiment",
        parse=number,
        check=between(0, 1),
    )
    guard_min_shoppers: int = option(
        "SHOPSENSE_GUARD_MIN_SHOPPERS",
        100,
        "guard rail: shoppers an arm needs before its metrics are judged",
        parse=integer,
        check=at_least(1),
    )
    guard_interval_s: float = option(
        "SHOPSENSE_GUARD_INTERVAL_S",
        30.0,
        "how often the running experiment's report is checked, seconds; 0: never",
        parse=number,
        check=at_least(0),
    )
    # The continuous-retraining schedule (services/trainer/schedule.py); off by default.
    retrain_models: str = option(
        "SHOPSENSE_RETRAIN_MODELS",
        "",
        "models the schedule retrains from new feedback, comma-separated (cross_encoder, "
        "sequence_recommender); empty: the schedule is off",
    )
    retrain_min_new_events: int = option(
        "SHOPSENSE_RETRAIN_MIN_NEW_EVENTS",
        10_000,
        "feedback events a model learns from, received since its newest training job was "
        "created, that start a scheduled retrain",
        parse=integer,
        check=at_least(1),
    )
    retrain_interval_s: float = option(
        "SHOPSENSE_RETRAIN_INTERVAL_S",
        300.0,
        "how often the schedule counts new feedback, seconds",
        parse=number,
        check=at_least(0.05),
    )
    retrain_window_days: float = option(
        "SHOPSENSE_RETRAIN_WINDOW_DAYS",
        0.0,
        "a scheduled job trains on the feedback of this many days back; 0: all of it",
        parse=number,
        check=at_least(0),
    )
    retrain_hyperparameters: str = option(
        "SHOPSENSE_RETRAIN_HYPERPARAMETERS",
        "",
        "hyperparameter overrides of scheduled jobs, NAME=VALUE,... (as StartTraining's)",
    )
    retrain_catalog: str = option(
        "SHOPSENSE_RETRAIN_CATALOG",
        "",
        "the catalog folder (product.csv) a scheduled cross_encoder job reads; "
        "required when SHOPSENSE_RETRAIN_MODELS names the cross_encoder",
    )
    retrain_experiment_share: float = option(
        "SHOPSENSE_RETRAIN_EXPERIMENT_SHARE",
        0.0,
        "share of the shoppers an A/B experiment started with a scheduled candidate sends "
        "to it (the rest: the serving version); 0: register the candidate, start nothing",
        parse=number,
        check=between(0, 0.9),
    )


@record
class ClientSettings(Settings):
    """Where a client of the suite (the command line, benchmarks, the launcher) finds it."""

    NAME = "client"

    gateway_target: str = _target("gateway")
    intent_target: str = _target("intent")
    retrieval_target: str = _target("retrieval")
    ranking_target: str = _target("ranking")
    feedback_target: str = _target("feedback")
    trainer_target: str = _target("trainer")
    recommend_target: str = _target("recommend")
    triton_url: str = _triton_url()
    metrics_targets: str = option(
        "SHOPSENSE_METRICS_TARGETS",
        lambda values, _cls: _metrics_targets(values),
        "where `shopsense observe` scrapes /metrics: NAME=host:port,... (default: each "
        f"service's target with its port + {METRICS_PORT_OFFSET}, Triton's host at 8002)",
        derived_from="gateway_target",
    )
    otlp_endpoint: str = option(
        "SHOPSENSE_OTLP_ENDPOINT",
        "127.0.0.1:4317",
        "where `shopsense observe` receives the suite's traces (OTLP/gRPC), host:port; "
        "the suite must export there",
        check=address,
    )

    tls_cert: str = _tls("CERT", "the client certificate chain")
    tls_key: str = _tls("KEY", "the client certificate's private key")
    tls_ca: str = _tls("CA", "the CA bundle the servers' certificates must chain to")
    api_key: str = option(
        "SHOPSENSE_API_KEY",
        "",
        "API key sent as authorization: Bearer <key> on every call; none",
        secret=True,
    )


def _metrics_targets(values: Any) -> str:
    targets = []
    for service in PORTS:
        host, _, port = str(values[f"{service}_target"]).rpartition(":")
        targets.append(f"{service}={host}:{int(port) + METRICS_PORT_OFFSET}")
    triton_host = str(values["triton_url"]).rpartition(":")[0]
    return ",".join([*targets, f"triton={triton_host}:8002"])


# Every record `shopsense config` can print, by name.
ALL: dict[str, type[Settings]] = {
    cls.NAME: cls
    for cls in (
        GatewaySettings,
        IntentSettings,
        RetrievalSettings,
        RankingSettings,
        FeedbackSettings,
        RecommendSettings,
        TrainerSettings,
        ClientSettings,
    )
}
SERVICES = tuple(name for name in ALL if name != ClientSettings.NAME)
