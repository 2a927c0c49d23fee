"""Every setting of the suite, read from environment variables with embedded defaults.

One place so that the README's table, `make run` and the services agree. Each field's
comment names its variable, unit and default.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from shared import paths

# A development-only secret: `make run` works out of the box, and every service logs a
# warning while it is in use. Production sets SHOPSENSE_TOKEN_SECRET.
DEV_TOKEN_SECRET = "shopsense-dev-secret-change-me"


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


N = TypeVar("N", int, float)


def _env_number(name: str, default: N, kind: type[N]) -> N:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return kind(raw)
    except ValueError as exc:
        what = "an integer" if kind is int else "a number"
        raise ValueError(f"{name}: expected {what}, got {raw!r}") from exc


def _env_int(name: str, default: int) -> int:
    return _env_number(name, default, int)


def _env_float(name: str, default: float) -> float:
    return _env_number(name, default, float)


@dataclass(frozen=True)
class Settings:
    # Address each server binds, "host:port"; port 0 picks a free one (tests).
    gateway_listen: str = field(
        default_factory=lambda: _env("SHOPSENSE_GATEWAY_LISTEN", "127.0.0.1:50051")
    )
    intent_listen: str = field(
        default_factory=lambda: _env("SHOPSENSE_INTENT_LISTEN", "127.0.0.1:50052")
    )
    retrieval_listen: str = field(
        default_factory=lambda: _env("SHOPSENSE_RETRIEVAL_LISTEN", "127.0.0.1:50053")
    )
    ranking_listen: str = field(
        default_factory=lambda: _env("SHOPSENSE_RANKING_LISTEN", "127.0.0.1:50054")
    )
    feedback_listen: str = field(
        default_factory=lambda: _env("SHOPSENSE_FEEDBACK_LISTEN", "127.0.0.1:50055")
    )
    trainer_listen: str = field(
        default_factory=lambda: _env("SHOPSENSE_TRAINER_LISTEN", "127.0.0.1:50056")
    )
    # Where clients reach each service (defaults: the listen addresses above).
    intent_target: str = field(
        default_factory=lambda: _env("SHOPSENSE_INTENT_TARGET", "127.0.0.1:50052")
    )
    retrieval_target: str = field(
        default_factory=lambda: _env("SHOPSENSE_RETRIEVAL_TARGET", "127.0.0.1:50053")
    )
    ranking_target: str = field(
        default_factory=lambda: _env("SHOPSENSE_RANKING_TARGET", "127.0.0.1:50054")
    )
    gateway_target: str = field(
        default_factory=lambda: _env("SHOPSENSE_GATEWAY_TARGET", "127.0.0.1:50051")
    )
    feedback_target: str = field(
        default_factory=lambda: _env("SHOPSENSE_FEEDBACK_TARGET", "127.0.0.1:50055")
    )
    trainer_target: str = field(
        default_factory=lambda: _env("SHOPSENSE_TRAINER_TARGET", "127.0.0.1:50056")
    )
    # Triton's gRPC endpoint, "host:port". SHOPSENSE_TRITON_URL, default 127.0.0.1:8001.
    triton_url: str = field(default_factory=lambda: _env("SHOPSENSE_TRITON_URL", "127.0.0.1:8001"))
    # text_encoder version to request; "" lets Triton serve its latest. SHOPSENSE_TEXT_ENCODER_VERSION.
    text_encoder_version: str = field(
        default_factory=lambda: _env("SHOPSENSE_TEXT_ENCODER_VERSION", "")
    )
    # Databases and indexes live here. SHOPSENSE_STATE_DIR, default <repo>/var.
    state_dir: Path = field(default_factory=paths.state_dir)
    # The retrieval service's catalog index file. SHOPSENSE_CATALOG_DB, default <state_dir>/catalog.db.
    catalog_db: Path = field(
        default_factory=lambda: Path(
            _env("SHOPSENSE_CATALOG_DB", str(paths.state_dir() / "catalog.db"))
        )
    )
    # The feedback store: any SQLAlchemy URL (postgresql+psycopg://... in production).
    # SHOPSENSE_FEEDBACK_DB_URL, default sqlite:///<state_dir>/feedback.db (WAL mode).
    feedback_db_url: str = field(
        default_factory=lambda: _env(
            "SHOPSENSE_FEEDBACK_DB_URL", f"sqlite:///{paths.state_dir() / 'feedback.db'}"
        )
    )
    # The model registry and training jobs: any SQLAlchemy URL.
    # SHOPSENSE_REGISTRY_DB_URL, default sqlite:///<state_dir>/registry.db.
    registry_db_url: str = field(
        default_factory=lambda: _env(
            "SHOPSENSE_REGISTRY_DB_URL", f"sqlite:///{paths.state_dir() / 'registry.db'}"
        )
    )
    # Triton's model repository the trainer publishes into. SHOPSENSE_TRITON_MODELS,
    # default <repo>/triton_models.
    triton_models: Path = field(default_factory=paths.triton_model_repository)
    # Training runs (checkpoints, exports, logs). SHOPSENSE_TRAINING_DIR, default <state_dir>/training.
    training_dir: Path = field(
        default_factory=lambda: Path(
            _env("SHOPSENSE_TRAINING_DIR", str(paths.state_dir() / "training"))
        )
    )
    # Candidates the cross-encoder rescores (the rest keep their feature order).
    # SHOPSENSE_RERANK_DEPTH, default 50.
    rerank_depth: int = field(default_factory=lambda: _env_int("SHOPSENSE_RERANK_DEPTH", 50))
    # HMAC key that signs attribution tokens. SHOPSENSE_TOKEN_SECRET; the default is for development only.
    token_secret: str = field(
        default_factory=lambda: _env("SHOPSENSE_TOKEN_SECRET", DEV_TOKEN_SECRET)
    )
    # gRPC worker threads per server. SHOPSENSE_GRPC_WORKERS, default 16.
    grpc_workers: int = field(default_factory=lambda: _env_int("SHOPSENSE_GRPC_WORKERS", 16))
    # Seconds a stopping server lets in-flight calls finish. SHOPSENSE_SHUTDOWN_GRACE_S, default 5.
    shutdown_grace_s: float = field(
        default_factory=lambda: _env_float("SHOPSENSE_SHUTDOWN_GRACE_S", 5.0)
    )
    # The gateway's deadline when the caller sets none, seconds. SHOPSENSE_SEARCH_DEADLINE_S, default 2.
    search_deadline_s: float = field(
        default_factory=lambda: _env_float("SHOPSENSE_SEARCH_DEADLINE_S", 2.0)
    )
    # Share of the remaining deadline intent may use, and ranking may use. Defaults 0.25 and 0.5.
    intent_budget: float = field(
        default_factory=lambda: _env_float("SHOPSENSE_INTENT_BUDGET", 0.25)
    )
    ranking_budget: float = field(
        default_factory=lambda: _env_float("SHOPSENSE_RANKING_BUDGET", 0.5)
    )
    # Candidates the gateway asks retrieval for and ranking orders (more when a page needs
    # them). SHOPSENSE_CANDIDATES, default 100: 200 bought +0.0003 nDCG@10 on a synthetic dev
    # store for twice the bytes on every hop.
    candidates: int = field(default_factory=lambda: _env_int("SHOPSENSE_CANDIDATES", 100))
    # The store's class taxonomy, one class a line (intent's zero-shot prototypes use the names).
    # SHOPSENSE_TAXONOMY, default ../shared/data/wands/classes.txt where it exists.
    taxonomy_path: Path = field(
        default_factory=lambda: Path(
            _env("SHOPSENSE_TAXONOMY", str(paths.shared_data_dir() / "wands" / "classes.txt"))
        )
    )
    # How often intent re-reads the catalog's class statistics, seconds. Default 5.
    intent_refresh_s: float = field(
        default_factory=lambda: _env_float("SHOPSENSE_INTENT_REFRESH_S", 5.0)
    )
    # A TOML file of experiments the trainer creates (and starts, with `start = true`) when
    # it starts; see README. SHOPSENSE_EXPERIMENTS_FILE, default none.
    experiments_file: str = field(default_factory=lambda: _env("SHOPSENSE_EXPERIMENTS_FILE", ""))
    # Share of searches whose top ``explore_depth`` results are shuffled, so that the trainer
    # can measure position bias from clicks (shared/experiments/exploration.py).
    # SHOPSENSE_EXPLORE_RATE, default 0.05; 0 turns it off.
    explore_rate: float = field(default_factory=lambda: _env_float("SHOPSENSE_EXPLORE_RATE", 0.05))
    # How many top results an explored search shuffles. SHOPSENSE_EXPLORE_DEPTH, default 10.
    explore_depth: int = field(default_factory=lambda: _env_int("SHOPSENSE_EXPLORE_DEPTH", 10))
    # Guard rails (shared/experiments/guardrails.py): the running experiment is stopped when
    # an arm fails or degrades more than SHOPSENSE_GUARD_MAX_ERROR_RATE (default 0.05) of
    # its last 1,000 searches, or their p99 latency passes SHOPSENSE_GUARD_MAX_P99_MS
    # (default 2000; 0 turns it off), once it has SHOPSENSE_GUARD_MIN_SEARCHES (100); or
    # when its click-through or conversion rate is below the control's with p below
    # SHOPSENSE_GUARD_ALPHA (default 0.001) with SHOPSENSE_GUARD_MIN_SHOPPERS (100) shoppers
    # an arm, checked by the trainer every SHOPSENSE_GUARD_INTERVAL_S (default 30; 0: never).
    guard_max_error_rate: float = field(
        default_factory=lambda: _env_float("SHOPSENSE_GUARD_MAX_ERROR_RATE", 0.05)
    )
    guard_max_p99_ms: float = field(
        default_factory=lambda: _env_float("SHOPSENSE_GUARD_MAX_P99_MS", 2000.0)
    )
    guard_min_searches: int = field(
        default_factory=lambda: _env_int("SHOPSENSE_GUARD_MIN_SEARCHES", 100)
    )
    guard_alpha: float = field(default_factory=lambda: _env_float("SHOPSENSE_GUARD_ALPHA", 0.001))
    guard_min_shoppers: int = field(
        default_factory=lambda: _env_int("SHOPSENSE_GUARD_MIN_SHOPPERS", 100)
    )
    guard_interval_s: float = field(
        default_factory=lambda: _env_float("SHOPSENSE_GUARD_INTERVAL_S", 30.0)
    )
    # How long after a search its feedback counts, seconds: an event older than this, or
    # whose attribution token was issued longer before it, is rejected.
    # SHOPSENSE_ATTRIBUTION_WINDOW_S, default 604800 (7 days).
    attribution_window_s: float = field(
        default_factory=lambda: _env_float("SHOPSENSE_ATTRIBUTION_WINDOW_S", 604800.0)
    )
    # Log level. SHOPSENSE_LOG_LEVEL, default info.
    log_level: str = field(default_factory=lambda: _env("SHOPSENSE_LOG_LEVEL", "info"))


def load() -> Settings:
    """Read the settings from the environment now."""
    return Settings()
