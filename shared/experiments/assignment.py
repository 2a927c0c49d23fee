"""Experiments as the suite sees them, their checks, and deterministic arm assignment.

The same id and salt always land in the same arm, across requests and restarts of every
service: the bucket is the first 8 bytes of SHA-256(salt + ":" + id), taken modulo 10,000.
Whether a shopper enters a targeted experiment at all is decided the same way with the
salt ``salt + "/enter"``, a hash independent of the arm's, so the arm split stays even
among those who enter.

This module knows nothing of gRPC or storage: the trainer checks and stores definitions,
the gateway assigns shoppers, both with these types.
"""

from __future__ import annotations

import hashlib
import math
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from shared.errors import InvalidArgument
from shared.models.kinds import MODEL_KINDS
from shared.models.versions import is_version_number

BUCKETS = 10_000
AB, INTERLEAVING = "ab", "interleaving"
TYPES = (AB, INTERLEAVING)
PINNABLE_MODELS = MODEL_KINDS
MAX_ARMS = 10
MAX_RERANK_DEPTH = 200
SHARE_TOLERANCE = 1e-6
_EXPERIMENT_NAME = re.compile(r"^[a-z0-9_-]{1,64}$")
_ARM_NAME = re.compile(r"^[a-z0-9_-]{1,32}$")
MAX_SALT_CHARS = 128
MAX_DESCRIPTION_CHARS = 2000


@dataclass(frozen=True)
class Pipeline:
    """An arm's pipeline settings; zero values mean the suite's defaults."""

    # Candidates the cross-encoder rescores: 0 default, 1..200, -1 features only.
    rerank_depth: int = 0
    # RRF weights of the BM25 and dense lists; both 0: the index's defaults.
    lexical_weight: float = 0.0
    dense_weight: float = 0.0
    # Testing only: results in reverse order (a deliberately bad arm).
    reverse_ranking: bool = False
    # Personalised search: True on, False off, None the gateway's SHOPSENSE_PERSONALIZE.
    personalize: bool | None = None

    @property
    def fusion_weights(self) -> dict[str, float] | None:
        """``{"lexical": w, "dense": w}``, or None for the defaults."""
        if self.lexical_weight == 0.0 and self.dense_weight == 0.0:
            return None
        return {"lexical": self.lexical_weight, "dense": self.dense_weight}


@dataclass(frozen=True)
class Arm:
    name: str
    share: float  # fraction of the experiment's shoppers; the shares sum to 1
    # Model kind -> pinned version ("" or absent: the serving version).
    models: Mapping[str, str] = field(default_factory=dict)
    pipeline: Pipeline = field(default_factory=Pipeline)

    def pinned(self, model: str) -> str:
        """The pinned version of ``model``, "" for the serving one."""
        return self.models.get(model, "")


@dataclass(frozen=True)
class Experiment:
    name: str
    salt: str
    arms: Sequence[Arm]
    type: str = AB
    # Share of all shoppers that enter, in (0, 1].
    traffic_fraction: float = 1.0
    # Only shoppers with a user id enter.
    signed_in_only: bool = False
    description: str = ""

    def arm(self, name: str) -> Arm:
        """The arm called ``name`` (KeyError when none)."""
        for arm in self.arms:
            if arm.name == name:
                return arm
        raise KeyError(name)

    def pins(self) -> dict[str, set[int]]:
        """Model kind -> the versions the arms pin (only kinds with pins)."""
        out: dict[str, set[int]] = {}
        for arm in self.arms:
            for model, version in arm.models.items():
                if version:
                    out.setdefault(model, set()).add(int(version))
        return out


# With no experiment configured every shopper is in one arm.
NO_EXPERIMENT = Experiment(name="none", salt="", arms=(Arm("control", 1.0),))
CONTROL = NO_EXPERIMENT.arms[0]


def bucket(unit_id: str, salt: str) -> int:
    digest = hashlib.sha256(f"{salt}:{unit_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def enters(experiment: Experiment, user_id: str, session_id: str) -> bool:
    """Whether the shopper is in the experiment's population (targeting)."""
    if experiment.signed_in_only and not user_id:
        return False
    if experiment.traffic_fraction >= 1.0:
        return True
    unit = user_id or session_id
    return bucket(unit, experiment.salt + "/enter") < experiment.traffic_fraction * BUCKETS


def assign_arm(experiment: Experiment, user_id: str, session_id: str) -> Arm | None:
    """The shopper's arm: by user id when signed in, else by session id; None when the
    targeting leaves the shopper out."""
    if not enters(experiment, user_id, session_id):
        return None
    b = bucket(user_id or session_id, experiment.salt)
    edge = 0.0
    for arm in experiment.arms:
        edge += arm.share * BUCKETS
        if b < edge:
            return arm
    return experiment.arms[-1]


def assign(experiment: Experiment, user_id: str, session_id: str) -> str:
    """The name of the shopper's arm ("control" when the targeting leaves them out)."""
    arm = assign_arm(experiment, user_id, session_id)
    return arm.name if arm is not None else CONTROL.name


def _number(value: object, name: str) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise InvalidArgument(f"{name}: must be a finite number (got {value!r})")
    return float(value)


def validate(experiment: Experiment, field_name: str = "experiment") -> Experiment:
    """Check a definition; return it with the salt filled in (the name when empty).

    Raises ``InvalidArgument`` naming the first bad field, e.g.
    ``experiment.arms[1].share: must be > 0``. Whether pinned versions exist is the
    registry's question, not this function's.
    """
    f = field_name
    if not _EXPERIMENT_NAME.match(experiment.name or ""):
        raise InvalidArgument(
            f"{f}.name: 1-64 characters of a-z, 0-9, '-' and '_' (got {experiment.name!r})"
        )
    salt = experiment.salt or experiment.name
    if len(salt) > MAX_SALT_CHARS:
        raise InvalidArgument(f"{f}.salt: longer than {MAX_SALT_CHARS} characters")
    if experiment.type not in TYPES:
        raise InvalidArgument(f"{f}.type: must be one of {', '.join(TYPES)}")
    if len(experiment.description) > MAX_DESCRIPTION_CHARS:
        raise InvalidArgument(f"{f}.description: longer than {MAX_DESCRIPTION_CHARS} characters")
    arms = list(experiment.arms)
    if experiment.type == INTERLEAVING and len(arms) != 2:
        raise InvalidArgument(f"{f}.arms: interleaving compares exactly 2 arms (got {len(arms)})")
    if not 2 <= len(arms) <= MAX_ARMS:
        raise InvalidArgument(f"{f}.arms: 2 to {MAX_ARMS} arms (got {len(arms)})")
    seen: set[str] = set()
    total = 0.0
    for i, arm in enumerate(arms):
        a = f"{f}.arms[{i}]"
        if not _ARM_NAME.match(arm.name or ""):
            raise InvalidArgument(
                f"{a}.name: 1-32 characters of a-z, 0-9, '-' and '_' (got {arm.name!r})"
            )
        if arm.name in seen:
            raise InvalidArgument(f"{a}.name: {arm.name!r} is used by another arm")
        seen.add(arm.name)
        share = _number(arm.share, f"{a}.share")
        if share <= 0 or share > 1:
            raise InvalidArgument(f"{a}.share: must be > 0 and <= 1 (got {share})")
        total += share
        for model, version in arm.models.items():
            if model not in PINNABLE_MODELS:
                raise InvalidArgument(
                    f"{a}.models: unknown model {model!r} (one of {', '.join(PINNABLE_MODELS)})"
                )
            if version and not is_version_number(version):
                raise InvalidArgument(
                    f"{a}.models.{model}: a version number >= 1 or empty (got {version[:40]!r})"
                )
        p = arm.pipeline
        if not isinstance(p.rerank_depth, int) or not -1 <= p.rerank_depth <= MAX_RERANK_DEPTH:
            raise InvalidArgument(
                f"{a}.pipeline.rerank_depth: -1 (off), 0 (default) or 1..{MAX_RERANK_DEPTH} "
                f"(got {p.rerank_depth!r})"
            )
        for name in ("lexical_weight", "dense_weight"):
            if _number(getattr(p, name), f"{a}.pipeline.{name}") < 0:
                raise InvalidArgument(f"{a}.pipeline.{name}: must be >= 0")
    if abs(total - 1.0) > SHARE_TOLERANCE:
        raise InvalidArgument(f"{f}.arms: the shares must sum to 1 (they sum to {total:.6g})")
    fraction = _number(experiment.traffic_fraction, f"{f}.targeting.traffic_fraction")
    if not 0 < fraction <= 1:
        raise InvalidArgument(
            f"{f}.targeting.traffic_fraction: must be > 0 and <= 1 (got {fraction})"
        )
    return Experiment(
        name=experiment.name,
        salt=salt,
        arms=tuple(arms),
        type=experiment.type,
        traffic_fraction=fraction,
        signed_in_only=bool(experiment.signed_in_only),
        description=experiment.description,
    )


def to_dict(experiment: Experiment) -> dict:
    """A JSON-ready definition (what the store keeps and compares)."""
    return {
        "name": experiment.name,
        "salt": experiment.salt,
        "type": experiment.type,
        "traffic_fraction": experiment.traffic_fraction,
        "signed_in_only": experiment.signed_in_only,
        "description": experiment.description,
        "arms": [
            {
                "name": arm.name,
                "share": arm.share,
                "models": {k: v for k, v in sorted(arm.models.items()) if v},
                "pipeline": {
                    "rerank_depth": arm.pipeline.rerank_depth,
                    "lexical_weight": arm.pipeline.lexical_weight,
                    "dense_weight": arm.pipeline.dense_weight,
                    "reverse_ranking": arm.pipeline.reverse_ranking,
                    # Only when set, so definitions stored before the setting compare equal.
                    **(
                        {"personalize": arm.pipeline.personalize}
                        if arm.pipeline.personalize is not None
                        else {}
                    ),
                },
            }
            for arm in experiment.arms
        ],
    }


def from_dict(data: Mapping, field_name: str = "experiment") -> Experiment:
    """A definition from ``to_dict``'s shape or a config file's table (unchecked: call
    ``validate``). Unknown keys are refused, naming them, so a typo is not ignored."""
    f = field_name
    _only(
        data,
        {"name", "salt", "type", "traffic_fraction", "signed_in_only", "description", "arms"},
        f,
    )
    arms = []
    raw_arms = data.get("arms", [])
    if not isinstance(raw_arms, Sequence) or isinstance(raw_arms, str):
        raise InvalidArgument(f"{f}.arms: must be a list of arms")
    for i, raw in enumerate(raw_arms):
        a = f"{f}.arms[{i}]"
        if not isinstance(raw, Mapping):
            raise InvalidArgument(f"{a}: must be a table")
        _only(raw, {"name", "share", "models", "pipeline"}, a)
        models = raw.get("models", {}) or {}
        pipeline = raw.get("pipeline", {}) or {}
        if not isinstance(models, Mapping) or not isinstance(pipeline, Mapping):
            raise InvalidArgument(f"{a}: models and pipeline must be tables")
        _only(
            pipeline,
            {"rerank_depth", "lexical_weight", "dense_weight", "reverse_ranking", "personalize"},
            f"{a}.pipeline",
        )
        arms.append(
            Arm(
                name=str(raw.get("name", "")),
                share=raw.get("share", 0.0),
                models={str(k): str(v) for k, v in models.items()},
                pipeline=Pipeline(
                    rerank_depth=pipeline.get("rerank_depth", 0),
                    lexical_weight=pipeline.get("lexical_weight", 0.0),
                    dense_weight=pipeline.get("dense_weight", 0.0),
                    reverse_ranking=bool(pipeline.get("reverse_ranking", False)),
                    personalize=_optional_flag(pipeline.get("personalize"), f"{a}.pipeline"),
                ),
            )
        )
    return Experiment(
        name=str(data.get("name", "")),
        salt=str(data.get("salt", "")),
        arms=tuple(arms),
        type=str(data.get("type", AB)),
        traffic_fraction=data.get("traffic_fraction", 1.0),
        signed_in_only=bool(data.get("signed_in_only", False)),
        description=str(data.get("description", "")),
    )


def _optional_flag(value: object, where: str) -> bool | None:
    """``personalize``: true, false or absent (the gateway's default)."""
    if value is None or isinstance(value, bool):
        return value
    raise InvalidArgument(f"{where}.personalize: true or false (got {value!r})")


def _only(data: Mapping, allowed: set[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise InvalidArgument(
            f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})"
        )


def read_file(path: Path, context: str = "") -> list[tuple[Experiment, bool]]:
    """The ``[[experiment]]`` tables of a TOML file, each with its ``start`` flag
    (unchecked: call ``validate``). InvalidArgument names the file, and the table and
    key where one is wrong; ``context`` prefixes the message (e.g. the setting's name)."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InvalidArgument(f"{context}{path}: {exc}") from exc
    tables = data.get("experiment", [])
    if not tables or not isinstance(tables, list):
        raise InvalidArgument(f"{context}{path}: no [[experiment]] table")
    out = []
    for i, raw in enumerate(tables):
        raw = dict(raw)
        start = bool(raw.pop("start", False))
        out.append((from_dict(raw, f"{context}{path}: experiment[{i}]"), start))
    return out
