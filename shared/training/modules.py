"""The three fine-tunable models as torch modules, and their checkpoint format.

Every model is all-MiniLM-L6-v2 (a 6-layer BERT) plus its own adaptation layer:

- ``intent_classifier``: mean pooling -> L2 normalisation -> dropout -> linear over the
  store's classes (a cosine classifier, whose rows start as the zero-shot class
  prototypes: see ``IntentRecipe.initialise``; logits, the exported graph adds the
  softmax);
- ``text_encoder``: mean pooling -> L2 normalisation (a bi-encoder);
- ``cross_encoder``: ``[CLS] query [SEP] product [SEP]`` -> mean pooling over the pair ->
  dropout -> linear -> one relevance logit (mean pooling, as the base model was trained,
  learned faster on this CPU budget than the untrained [CLS] state).

A checkpoint is a folder holding ``model.safetensors`` (the module's whole state dict,
LoRA already merged) and ``shopsense_model.json`` (:class:`ModelSpec`). The same spec
travels into the Triton version folder, so a served version says what it is.
torch and transformers are imported by this module: training and export only.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Self

import torch
from torch import nn

from shared.data.catalog import Product
from shared.models.kinds import CROSS_ENCODER, INTENT_CLASSIFIER, MODEL_KINDS, TEXT_ENCODER
from shared.models.layout import SPEC_FILE
from shared.models.paths import base_model_dir

WEIGHTS_FILE = "model.safetensors"
BASE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def product_text(product: Product) -> str:
    """What the text encoder and the cross-encoder read for a product.

    Title, class and attribute values: the candidates the ranking service receives carry
    exactly these fields (no description), so training and serving see the same text.
    """
    return product.embedding_text()


class JsonSpec:
    """A dataclass spec written as ``spec.json`` beside the weights, and read back."""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_file(cls, path: Path) -> Self:
        return cls(**json.loads(Path(path).read_text(encoding="utf-8")))


@dataclass(frozen=True)
class ModelSpec(JsonSpec):
    """What a checkpoint or a served version is: kind, labels, token limits, lineage."""

    kind: str
    # intent_classifier only: the class names, in logit order.
    labels: list[str] = field(default_factory=list)
    # Token limit the model was trained with (queries; pairs for the cross-encoder).
    max_length: int = 32
    # Token limit for product texts (text_encoder) or whole pairs (cross_encoder).
    doc_max_length: int = 64
    dropout: float = 0.1
    base: str = BASE_MODEL
    # Transformer layers: the base model's first ``layers`` (6: all of them).
    layers: int = 6

    def __post_init__(self) -> None:
        if self.kind not in MODEL_KINDS:
            raise ValueError(f"kind: unknown model kind {self.kind!r}; one of {MODEL_KINDS}")
        if self.kind == INTENT_CLASSIFIER and not self.labels:
            raise ValueError("labels: an intent classifier needs at least one class")


def _bert(pretrained: bool, dropout: float, layers: int) -> nn.Module:
    """The base transformer with its first ``layers`` layers: pretrained weights, or the
    same shape to load a checkpoint."""
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(str(base_model_dir()), local_files_only=True)
    if not 1 <= layers <= config.num_hidden_layers:
        raise ValueError(f"layers: must be 1..{config.num_hidden_layers}, got {layers}")
    config.num_hidden_layers = layers
    config.hidden_dropout_prob = dropout
    config.attention_probs_dropout_prob = dropout
    # Eager attention traces to plain MatMul/Softmax that every ONNX runtime supports.
    if pretrained:
        return AutoModel.from_pretrained(
            str(base_model_dir()),
            config=config,
            local_files_only=True,
            attn_implementation="eager",
        )
    return AutoModel.from_config(config, attn_implementation="eager")


def mean_pool(tokens: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average of the token states where attention_mask is 1."""
    mask = attention_mask.unsqueeze(-1).to(tokens.dtype)
    return (tokens * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


class ShopsenseModel(nn.Module):
    """Base transformer + the adaptation layer of ``spec.kind``."""

    def __init__(self, spec: ModelSpec, pretrained: bool = True) -> None:
        super().__init__()
        self.spec = spec
        self.bert = _bert(pretrained, spec.dropout, spec.layers)
        hidden = int(self.bert.config.hidden_size)
        self.dropout = nn.Dropout(spec.dropout)
        if spec.kind == INTENT_CLASSIFIER:
            self.head: nn.Module | None = nn.Linear(hidden, len(spec.labels))
        elif spec.kind == CROSS_ENCODER:
            self.head = nn.Linear(hidden, 1)
        else:
            self.head = None

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits ``[B, C]`` (classifier), unit embeddings ``[B, H]`` (encoder), or
        relevance logits ``[B]`` (cross-encoder)."""
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        tokens = self.bert(**kwargs)[0]
        if self.spec.kind == TEXT_ENCODER:
            return nn.functional.normalize(mean_pool(tokens, attention_mask), p=2.0, dim=1)
        assert self.head is not None
        if self.spec.kind == INTENT_CLASSIFIER:
            pooled = nn.functional.normalize(mean_pool(tokens, attention_mask), p=2.0, dim=1)
            return self.head(self.dropout(pooled))
        return self.head(self.dropout(mean_pool(tokens, attention_mask))).squeeze(-1)

    # -- checkpoints ---------------------------------------------------------------------
    def save(self, folder: Path) -> Path:
        """Write ``model.safetensors`` and ``shopsense_model.json`` into ``folder``."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(state, str(folder / WEIGHTS_FILE))
        (folder / SPEC_FILE).write_text(self.spec.to_json(), encoding="utf-8")
        return folder

    @classmethod
    def load(cls, folder: Path) -> ShopsenseModel:
        """The model saved in ``folder`` (eval mode)."""
        from safetensors.torch import load_file

        folder = Path(folder)
        spec = ModelSpec.from_file(folder / SPEC_FILE)
        model = cls(spec, pretrained=False)
        model.load_state_dict(load_file(str(folder / WEIGHTS_FILE)))
        return model.eval()

    def pruned(self, layers: int) -> ShopsenseModel:
        """This model with its first ``layers`` transformer layers (the upper ones
        dropped: the cheapest way to a faster model that keeps most of what was learnt;
        training with distillation then recovers the rest)."""
        if layers > self.spec.layers:
            raise ValueError(f"layers: this model has {self.spec.layers}, cannot keep {layers}")
        model = type(self)(replace(self.spec, layers=layers), pretrained=False)
        dropped = tuple(f"bert.encoder.layer.{i}." for i in range(layers, self.spec.layers))
        state = {k: v for k, v in self.state_dict().items() if not k.startswith(dropped)}
        model.load_state_dict(state)
        return model

    @classmethod
    def pretrained(cls, spec: ModelSpec) -> ShopsenseModel:
        """The untrained starting point: base weights and a fresh head."""
        return cls(spec, pretrained=True)
