"""Training hyperparameters: one frozen record for every model kind, validated on creation.

Defaults are per kind (:meth:`Hyperparameters.for_kind`) and sized so that ``make train``
fine-tunes all three models on the 20,000-product demo store in about 20 minutes on a
2-core CPU. Overrides arrive as strings from a gRPC ``map<string, string>`` and are
parsed to each field's type; an unknown name or an out-of-range value raises
:class:`HyperparameterError` naming the field.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace

from shared.models.kinds import (
    CROSS_ENCODER,
    INTENT_CLASSIFIER,
    MODEL_KINDS,
    SEQUENCE_RECOMMENDER,
    TEXT_ENCODER,
)

_PREFIX = "hyperparameters"
CROSS_ENCODER_LOSSES = ("listwise", "pointwise")


class HyperparameterError(ValueError):
    """A hyperparameter that is unknown, unparsable or out of range; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{_PREFIX}.{field}: {message}")
        self.field = field


# The kinds that learn from a teacher cross-encoder (a job's teacher_version).
DISTILLED_KINDS = (TEXT_ENCODER, CROSS_ENCODER)


@dataclass(frozen=True)
class Hyperparameters:
    """Everything a training run can be told. Validated in ``__post_init__``."""

    epochs: int = 1
    # Optimiser steps at most; 0 = no cap (``epochs`` decides).
    max_steps: int = 0
    batch_size: int = 32
    learning_rate: float = 5e-5
    weight_decay: float = 0.01
    # Share of the steps spent warming the learning rate up from 0 (then linear decay).
    warmup_ratio: float = 0.1
    dropout: float = 0.1
    max_grad_norm: float = 1.0
    # intent_classifier only.
    label_smoothing: float = 0.1
    # Transformer layers kept, the lowest ones (0: as many as the starting point has, 6 for
    # the base model): fewer is a pruned, faster model (each layer is about a sixth of the
    # cost); from a checkpoint with more layers, its first ``layers`` are kept. Not for a
    # sequence_recommender (see ``sequence_layers``).
    layers: int = 0
    # Lower transformer layers (of 6) kept frozen; the embeddings are frozen when > 0.
    freeze_layers: int = 0
    lora: bool = False
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.1
    # FGM adversarial training on the word-embedding matrix; 0 = off.
    fgm_epsilon: float = 0.0
    # Evaluations without improvement before stopping; 0 = never stop early.
    early_stopping_patience: int = 2
    # Steps between dev evaluations; 0 = once per epoch.
    eval_every: int = 0
    # Steps between the training-loss points of the history (the learning curve); 0 = about
    # 50 points a run. Evaluations always add one.
    log_every: int = 0
    # Training examples at most (sampled); 0 = all.
    max_train_examples: int = 0
    # Token limit for queries (pairs for the cross-encoder: see ``doc_max_length``).
    max_length: int = 20
    # Token limit for product texts (text_encoder) or whole query-product pairs.
    doc_max_length: int = 48
    # BM25-mined hard negatives per query.
    hard_negatives: int = 1
    # Weight of the distillation from a teacher cross-encoder (a job's teacher_version):
    # text_encoder, margin-MSE; cross_encoder, MSE between the student's and the teacher's
    # logits of the same pairs (a pruned cross-encoder learning the full one's scores).
    distill_weight: float = 0.0
    # Contrastive softmax temperature (scores are cosine / temperature).
    temperature: float = 0.05
    # Pseudo-queries made from each sampled product's title (intent, text_encoder).
    pseudo_queries_per_product: float = 0.0
    # Probability that a training query is augmented (synonym, token dropout, typo).
    augment_prob: float = 0.0
    # cross_encoder: "listwise" (softmax CE per query group) or "pointwise" (BCE).
    cross_encoder_loss: str = "listwise"
    # Candidates per query group for the cross-encoder (1 positive at least).
    group_size: int = 8
    # Dev queries scored at each evaluation (0 = all) and the dense-retrieval corpus
    # size for mid-training evaluations (0 = the whole catalog).
    eval_queries: int = 0
    eval_products: int = 4000
    # sequence_recommender: events of a history the shopper tower reads (the newest),
    # its transformer layers and heads, the negatives sampled per batch besides the
    # batch's own products (the whole catalog when it has fewer), and whether items get
    # a learned per-product residual on their text vector. basket_targets: the products of
    # a basket (purchases within a minute) are all predicted from the state before it,
    # not each from the line before it (shared.recommendation.sequence_inputs). Off: on
    # Online Retail before 2011-06-01 (2 epochs, the next order's last new product) it
    # gave Recall@10 0.077 against 0.097 line by line (co-occurrence 0.114).
    history_length: int = 50
    sequence_layers: int = 2
    sequence_heads: int = 2
    sampled_negatives: int = 8192
    item_ids: bool = True
    basket_targets: bool = False
    seed: int = 13

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            rule = _RULES.get(f.name)
            if rule is not None:
                rule(f.name, value)
        if self.max_length > self.doc_max_length:
            raise HyperparameterError(
                "max_length",
                f"must not exceed doc_max_length ({self.doc_max_length}), got {self.max_length}",
            )

    @classmethod
    def for_kind(
        cls, kind: str, overrides: Mapping[str, str | int | float | bool] | None = None
    ) -> Hyperparameters:
        """The defaults of ``kind`` with ``overrides`` (names -> values or their text)."""
        if kind not in MODEL_KINDS:
            raise HyperparameterError("kind", f"unknown model kind {kind!r}; one of {MODEL_KINDS}")
        base = cls(**_KIND_DEFAULTS[kind])
        if not overrides:
            return base
        hp = cls._with_overrides(base, overrides)
        if kind == SEQUENCE_RECOMMENDER:
            # It reads text vectors: the options that address a text encoder's own layers
            # have nothing to act on (refused here, before a job is started).
            for name in ("lora", "fgm_epsilon", "freeze_layers"):
                if getattr(hp, name):
                    raise HyperparameterError(name, f"not used by a {SEQUENCE_RECOMMENDER}")
            if hp.layers:
                raise HyperparameterError("layers", f"not used by a {SEQUENCE_RECOMMENDER}")
        if hp.layers and hp.freeze_layers >= hp.layers:
            raise HyperparameterError(
                "freeze_layers",
                f"must be below layers ({hp.layers}) so that a layer trains, "
                f"got {hp.freeze_layers}",
            )
        return hp

    @classmethod
    def _with_overrides(
        cls, base: Hyperparameters, overrides: Mapping[str, str | int | float | bool]
    ) -> Hyperparameters:
        types = {f.name: f.type for f in fields(cls)}
        parsed: dict[str, object] = {}
        for name, value in overrides.items():
            if name not in types:
                known = ", ".join(sorted(types))
                raise HyperparameterError(name, f"unknown hyperparameter; known: {known}")
            parsed[name] = _parse(name, str(types[name]), value)
        return replace(base, **parsed)

    def to_dict(self) -> dict[str, object]:
        """Field name -> value (JSON-ready)."""
        return asdict(self)


def _parse(name: str, type_name: str, value: str | int | float | bool) -> object:
    """``value`` (possibly text) as the field's type."""
    text = str(value).strip()
    if type_name == "bool":
        if isinstance(value, bool):
            return value
        if text.lower() in ("true", "1", "yes", "on"):
            return True
        if text.lower() in ("false", "0", "no", "off"):
            return False
        raise HyperparameterError(name, f"must be true or false, got {text!r}")
    if type_name == "int":
        if isinstance(value, bool):
            raise HyperparameterError(name, f"must be an integer, got {value!r}")
        try:
            number = float(text)
        except ValueError:
            raise HyperparameterError(name, f"must be an integer, got {text!r}") from None
        if not number.is_integer():
            raise HyperparameterError(name, f"must be an integer, got {text!r}")
        return int(number)
    if type_name == "float":
        if isinstance(value, bool):
            raise HyperparameterError(name, f"must be a number, got {value!r}")
        try:
            return float(text)
        except ValueError:
            raise HyperparameterError(name, f"must be a number, got {text!r}") from None
    return text


def _fmt(x: float) -> str:
    return f"{x:g}"


def _int_range(lo: int, hi: int):
    def check(name: str, value: object) -> None:
        if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
            raise HyperparameterError(name, f"must be an integer in [{lo}, {hi}], got {value!r}")

    return check


def _float_range(lo: float, hi: float, lo_open: bool = False, hi_open: bool = False):
    left, right = "(" if lo_open else "[", ")" if hi_open else "]"

    def check(name: str, value: object) -> None:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if ok:
            v = float(value)  # type: ignore[arg-type]
            ok = math.isfinite(v) and (v > lo if lo_open else v >= lo)
            ok = ok and (v < hi if hi_open else v <= hi)
        if not ok:
            raise HyperparameterError(
                name, f"must be in {left}{_fmt(lo)}, {_fmt(hi)}{right}, got {value!r}"
            )

    return check


def _bool(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise HyperparameterError(name, f"must be true or false, got {value!r}")


def _choice(*options: str):
    def check(name: str, value: object) -> None:
        if value not in options:
            raise HyperparameterError(name, f"must be one of {', '.join(options)}, got {value!r}")

    return check


def _choice_int(*options: int):
    def check(name: str, value: object) -> None:
        if isinstance(value, bool) or value not in options:
            listed = ", ".join(str(o) for o in options)
            raise HyperparameterError(name, f"must be one of {listed}, got {value!r}")

    return check


_RULES = {
    "epochs": _int_range(1, 100),
    "max_steps": _int_range(0, 1_000_000),
    "batch_size": _int_range(1, 1024),
    "learning_rate": _float_range(0.0, 0.01, lo_open=True),
    "weight_decay": _float_range(0.0, 1.0),
    "warmup_ratio": _float_range(0.0, 0.5),
    "dropout": _float_range(0.0, 0.9),
    "max_grad_norm": _float_range(0.0, 100.0, lo_open=True),
    "label_smoothing": _float_range(0.0, 0.5),
    "layers": _int_range(0, 6),
    "freeze_layers": _int_range(0, 6),
    "lora": _bool,
    "lora_r": _int_range(1, 256),
    "lora_alpha": _int_range(1, 1024),
    "lora_dropout": _float_range(0.0, 0.9),
    "fgm_epsilon": _float_range(0.0, 10.0),
    "early_stopping_patience": _int_range(0, 1000),
    "eval_every": _int_range(0, 1_000_000),
    "log_every": _int_range(0, 1_000_000),
    "max_train_examples": _int_range(0, 100_000_000),
    "max_length": _int_range(4, 512),
    "doc_max_length": _int_range(8, 512),
    "hard_negatives": _int_range(0, 32),
    "distill_weight": _float_range(0.0, 100.0),
    "temperature": _float_range(0.0, 1.0, lo_open=True),
    "pseudo_queries_per_product": _float_range(0.0, 10.0),
    "augment_prob": _float_range(0.0, 1.0),
    "cross_encoder_loss": _choice(*CROSS_ENCODER_LOSSES),
    "group_size": _int_range(2, 64),
    "eval_queries": _int_range(0, 1_000_000),
    "eval_products": _int_range(0, 100_000_000),
    "history_length": _int_range(2, 512),
    "sequence_layers": _int_range(1, 8),
    "sequence_heads": _choice_int(1, 2, 3, 4, 6, 8),
    "sampled_negatives": _int_range(1, 10_000_000),
    "item_ids": _bool,
    "basket_targets": _bool,
    "seed": _int_range(0, 2**31 - 1),
}

# Sized for the 2-core CPU budget (see the module docstring).
_KIND_DEFAULTS: dict[str, dict[str, object]] = {
    INTENT_CLASSIFIER: {
        # Dev top-1 was still rising at 4 epochs (0.905); 6 reached 0.922.
        "epochs": 6,
        "batch_size": 32,
        "learning_rate": 2e-4,
        "max_length": 16,
        "doc_max_length": 16,
        "label_smoothing": 0.1,
        "freeze_layers": 1,
        "pseudo_queries_per_product": 0.15,
        "augment_prob": 0.3,
        "max_train_examples": 9000,
        "hard_negatives": 0,
        "early_stopping_patience": 2,
        "eval_every": 200,
    },
    TEXT_ENCODER: {
        "epochs": 1,
        "batch_size": 32,
        "learning_rate": 5e-5,
        "max_length": 20,
        "doc_max_length": 40,
        "freeze_layers": 2,
        "hard_negatives": 1,
        "temperature": 0.05,
        "distill_weight": 1.0,
        "pseudo_queries_per_product": 0.05,
        "augment_prob": 0.2,
        "max_train_examples": 4000,
        "eval_queries": 200,
        "eval_products": 4000,
        "eval_every": 60,
    },
    CROSS_ENCODER: {
        "epochs": 1,
        "batch_size": 32,
        "learning_rate": 2e-4,
        "max_length": 20,
        "doc_max_length": 56,
        "freeze_layers": 2,
        "group_size": 8,
        "cross_encoder_loss": "pointwise",
        # Dev nDCG@10 was still climbing at 1,600 groups (0.731); 2,400 reached 0.762.
        "max_train_examples": 2400,
        "eval_queries": 60,
        "eval_every": 300,
    },
    SEQUENCE_RECOMMENDER: {
        # Amazon Scientific (8,442 histories, 4,385 items) on 2 CPU cores: dev NDCG@10
        # peaked at the 3rd epoch of a constant 1e-3; 4 with warmup and decay.
        "epochs": 4,
        "batch_size": 64,
        "learning_rate": 1e-3,
        "weight_decay": 0.0,
        "warmup_ratio": 0.05,
        "dropout": 0.1,
        "temperature": 0.05,
        "freeze_layers": 0,
        "hard_negatives": 0,
        "augment_prob": 0.0,
        "early_stopping_patience": 2,
        "eval_queries": 4000,
    },
}
