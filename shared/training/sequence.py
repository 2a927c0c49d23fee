"""``sequence_recommender``: what a shopper does next, from the text of what they did.

Two towers whose dot product scores a product for a shopper:

- **item tower**: the product's text vector from the text encoder (all-MiniLM-L6-v2, the
  store's fine-tuned ``text_encoder`` when there is one) -> a linear adapter (starts as
  the identity) + a learned per-product residual (starts at 0; a product the model has
  never seen has none, so a product added this morning is scored by its text alone)
  -> L2 normalisation;
- **shopper tower**: the item-tower embeddings of their recent events (oldest first, at
  most ``history_length``), plus learned embeddings of each event's position from the
  newest, its kind (view, cart, purchase) and the time since the event before it
  (:mod:`shared.recommendation.sequence_inputs`), through a small causal transformer;
  the newest position's state, L2-normalised, is the embedding of what comes next.

Training is next-item prediction at every position of every training history
(SASRec-style) with softmax cross-entropy over in-batch and sampled negatives: the
products of the batch plus ``sampled_negatives`` uniformly sampled ones, which is the
whole catalog when it is smaller (full softmax). Scores are cosine / ``temperature``.
The options are the other kinds' (AdamW, warmup, early stopping on the dev split, CUDA
with mixed precision when present), plus history augmentation (``augment_prob``: crop,
drop or reorder a training history). LoRA, FGM and freezing address the text
encoder's layers, which this model reads as vectors: they are refused here.

``id_only`` builds the baseline the papers compare with, SASRec with ID embeddings: no
text, items are learned vectors and scores are plain dot products.

A checkpoint folder holds ``model.safetensors``, ``shopsense_model.json`` (the spec) and
``items.json`` (the product ids in row order).
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from shared.evaluation.sequential import next_item_metrics
from shared.models.kinds import SEQUENCE_RECOMMENDER
from shared.models.layout import SPEC_FILE
from shared.recommendation.sequence_inputs import (
    GAP_BUCKETS,
    NUM_KINDS,
    basket_sources,
    left_padded,
)
from shared.training.hyperparams import HyperparameterError, Hyperparameters
from shared.training.loop import Device
from shared.training.modules import JsonSpec
from shared.training.train import TrainResult

WEIGHTS_FILE = "model.safetensors"
ITEMS_FILE = "items.json"
EVAL_BATCH = 512
# Dev cases scored at mid-training evaluations when ``eval_queries`` is 0.
_MID_EVAL_CASES = 4000
# Batches per pool sorted by length (see SequenceRecipe.batches).
_POOL_BATCHES = 50


@dataclass(frozen=True)
class SequenceSpec(JsonSpec):
    """What a sequence checkpoint is."""

    num_items: int
    dim: int = 384
    layers: int = 2
    heads: int = 2
    history_length: int = 50
    dropout: float = 0.1
    temperature: float = 0.05
    # False: the SASRec-ID baseline (no text, dot-product scores).
    text: bool = True
    # Learned per-product vectors (residuals on the text; the whole item without text).
    item_ids: bool = True
    # The text encoder the vectors came from ("base" = all-MiniLM-L6-v2 as published).
    text_encoder: str = "base"
    kind: str = SEQUENCE_RECOMMENDER

    def __post_init__(self) -> None:
        if self.kind != SEQUENCE_RECOMMENDER:
            raise ValueError(f"kind: {self.kind!r} is not a {SEQUENCE_RECOMMENDER}")
        if not self.text and not self.item_ids:
            raise ValueError("item_ids: a model without text needs item ids")
        if self.dim % self.heads:
            raise ValueError(f"heads: {self.heads} does not divide dim {self.dim}")


class _Block(nn.Module):
    """Post-norm transformer block with explicit attention (traces to plain ONNX ops)."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.ff = nn.Sequential(
            nn.Linear(dim, 4 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(4 * dim, dim)
        )
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, blocked: torch.Tensor) -> torch.Tensor:
        batch, length, dim = x.shape
        q, k, v = self.qkv(x).reshape(batch, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        scores = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(dim // self.heads))
        scores = scores.masked_fill(blocked, torch.finfo(scores.dtype).min)
        attended = self.drop(scores.softmax(dim=-1)) @ v
        attended = attended.transpose(1, 2).reshape(batch, length, dim)
        x = self.norm1(x + self.drop(self.proj(attended)))
        return self.norm2(x + self.drop(self.ff(x)))


class SequenceRecommender(nn.Module):
    """The two towers; see the module docstring."""

    def __init__(self, spec: SequenceSpec) -> None:
        super().__init__()
        self.spec = spec
        d = spec.dim
        self.adapter: nn.Linear | None = None
        if spec.text:
            self.adapter = nn.Linear(d, d)
            nn.init.eye_(self.adapter.weight)
            nn.init.zeros_(self.adapter.bias)
        self.residuals: nn.Embedding | None = None
        if spec.item_ids:
            # Row num_items is "unknown": always zero, never trained.
            self.residuals = nn.Embedding(spec.num_items + 1, d, padding_idx=spec.num_items)
            if spec.text:
                nn.init.zeros_(self.residuals.weight)
            else:
                nn.init.normal_(self.residuals.weight, std=0.02)
            with torch.no_grad():
                self.residuals.weight[spec.num_items].zero_()
        self.position = nn.Embedding(spec.history_length, d)
        self.kind = nn.Embedding(NUM_KINDS, d)
        self.gap = nn.Embedding(GAP_BUCKETS, d)
        for table in (self.position, self.kind, self.gap):
            if spec.text:  # start as the text model's plain reading of the last items
                nn.init.zeros_(table.weight)
            else:
                nn.init.normal_(table.weight, std=0.02)
        self.norm = nn.LayerNorm(d)
        self.dropout = nn.Dropout(spec.dropout)
        self.blocks = nn.ModuleList(_Block(d, spec.heads, spec.dropout) for _ in range(spec.layers))
        self.out = nn.LayerNorm(d)

    def items(self, text_vectors: torch.Tensor | None, rows: torch.Tensor) -> torch.Tensor:
        """Item-tower embeddings ``[N, d]`` (not normalised) of ``rows`` (-1 = unknown)."""
        out = None
        if self.adapter is not None:
            assert text_vectors is not None
            out = self.adapter(text_vectors)
        if self.residuals is not None:
            unknown = torch.full_like(rows, self.spec.num_items)
            known = (rows >= 0) & (rows < self.spec.num_items)
            residual = self.residuals(torch.where(known, rows, unknown))
            out = residual if out is None else out + residual
        assert out is not None
        return out

    def states(
        self,
        embeddings: torch.Tensor,
        kinds: torch.Tensor,
        gaps: torch.Tensor,
        mask: torch.Tensor,
    ) -> torch.Tensor:
        """Shopper-tower states ``[B, T, d]``: position t has read events 0..t.

        ``mask`` is 1 where an event is (left padding); the newest event is at T-1.
        """
        length = embeddings.shape[1]
        steps = torch.arange(length, device=embeddings.device)
        from_newest = (length - 1 - steps).clamp(max=self.spec.history_length - 1)
        x = embeddings + self.position(from_newest)[None] + self.kind(kinds) + self.gap(gaps)
        x = self.dropout(self.norm(x))
        future = steps[None, :] > steps[:, None]
        itself = steps[None, :] == steps[:, None]
        padding = mask[:, None, :] == 0
        # A padded position attends to itself only (a row with nothing to attend to would
        # be NaN, and NaN times a zero attention weight still spreads).
        blocked = (future[None] | padding) & ~itself[None]
        blocked = blocked[:, None]  # one mask for every head
        for block in self.blocks:
            x = block(x, blocked)
        return self.out(x)

    def shopper(
        self,
        embeddings: torch.Tensor,
        kinds: torch.Tensor,
        gaps: torch.Tensor,
        mask: torch.Tensor,
    ) -> torch.Tensor:
        """The served shopper vector ``[B, d]``: the newest position's state (unit length
        for the text model)."""
        state = self.states(embeddings, kinds, gaps, mask)[:, -1]
        return self._query(state)

    def _query(self, states: torch.Tensor) -> torch.Tensor:
        if self.spec.text:
            return nn.functional.normalize(states, dim=-1)
        return states

    def _key(self, items: torch.Tensor) -> torch.Tensor:
        if self.spec.text:
            return nn.functional.normalize(items, dim=-1)
        return items

    def logits(self, states: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Training scores ``[M, N]``: cosine / temperature (dot product for ID-only)."""
        scores = self._query(states) @ self._key(items).T
        return scores / self.spec.temperature if self.spec.text else scores

    # -- checkpoints ----------------------------------------------------------------------
    def save(self, folder: Path, item_keys: Sequence[str]) -> Path:
        """Write weights, spec and the product ids in row order into ``folder``."""
        from safetensors.torch import save_file

        if len(item_keys) != self.spec.num_items:
            raise ValueError(f"item_keys: {len(item_keys)} ids for {self.spec.num_items} rows")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(state, str(folder / WEIGHTS_FILE))
        (folder / SPEC_FILE).write_text(self.spec.to_json(), encoding="utf-8")
        (folder / ITEMS_FILE).write_text(json.dumps(list(item_keys)), encoding="utf-8")
        return folder

    @classmethod
    def load(cls, folder: Path) -> tuple[SequenceRecommender, list[str]]:
        """The model in ``folder`` (eval mode) and its product ids in row order."""
        from safetensors.torch import load_file

        folder = Path(folder)
        model = cls(SequenceSpec.from_file(folder / SPEC_FILE))
        model.load_state_dict(load_file(str(folder / WEIGHTS_FILE)))
        keys = json.loads((folder / ITEMS_FILE).read_text(encoding="utf-8"))
        return model.eval(), list(keys)


# --- data ----------------------------------------------------------------------------


@dataclass(frozen=True)
class History:
    """One shopper's events, oldest first: item rows, kinds and gap buckets."""

    rows: tuple[int, ...]
    kinds: tuple[int, ...]
    gaps: tuple[int, ...]

    def __post_init__(self) -> None:
        if not len(self.rows) == len(self.kinds) == len(self.gaps):
            raise ValueError("rows, kinds and gaps differ in length")

    @classmethod
    def of(cls, rows: Sequence[int], kind: int) -> History:
        """Events of one kind without times (a dataset that has only the order)."""
        return cls(tuple(rows), (kind,) * len(rows), (0,) * len(rows))


@dataclass(frozen=True)
class DevCase:
    history: History
    target: int


@dataclass
class SequenceCorpus:
    """What a sequence model trains on: the catalog (ids, text vectors) and histories."""

    item_keys: list[str]
    # float32 [N, d], L2-normalised text vectors; None for the ID-only baseline.
    vectors: np.ndarray | None
    train: list[History]
    dev: list[DevCase] = field(default_factory=list)

    @property
    def num_items(self) -> int:
        return len(self.item_keys)


def check_hyperparameters(hp: Hyperparameters) -> None:
    """Refuse the options that address a text encoder's own layers."""
    if hp.lora:
        raise HyperparameterError("lora", f"a {SEQUENCE_RECOMMENDER} reads text vectors: no LoRA")
    if hp.fgm_epsilon:
        raise HyperparameterError("fgm_epsilon", f"not used by a {SEQUENCE_RECOMMENDER}")
    if hp.freeze_layers:
        raise HyperparameterError("freeze_layers", f"not used by a {SEQUENCE_RECOMMENDER}")


def augment_history(history: History, rng: random.Random, prob: float) -> History:
    """With probability ``prob``: crop to a random 60-100% span, drop 20% of the events
    (never the newest), or reorder three neighbouring events (CL4SRec's three)."""
    n = len(history.rows)
    if n < 3 or rng.random() >= prob:
        return history
    keep = list(range(n))
    choice = rng.randrange(3)
    if choice == 0:
        span = max(2, int(n * rng.uniform(0.6, 1.0)))
        start = rng.randrange(0, n - span + 1)
        keep = keep[start : start + span]
    elif choice == 1:
        dropped = set(rng.sample(range(n - 1), max(1, int(0.2 * (n - 1)))))
        keep = [i for i in keep if i not in dropped]
    else:
        start = rng.randrange(0, n - 2)
        middle = keep[start : start + 3]
        rng.shuffle(middle)
        keep[start : start + 3] = middle
    return History(
        tuple(history.rows[i] for i in keep),
        tuple(history.kinds[i] for i in keep),
        tuple(history.gaps[i] for i in keep),
    )


def _chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class SequenceRecipe:
    """The training loop's recipe (:class:`shared.training.loop.Recipe`) for sequences."""

    primary_metric = "ndcg@10"

    def __init__(self, corpus: SequenceCorpus, hp: Hyperparameters, device: Device) -> None:
        check_hyperparameters(hp)
        self.corpus, self.hp, self.device = corpus, hp, device
        torch_device = device.torch_device
        self.vectors = (
            torch.from_numpy(np.ascontiguousarray(corpus.vectors, dtype=np.float32)).to(
                torch_device
            )
            if corpus.vectors is not None
            else None
        )
        histories = [h for h in corpus.train if self._has_target(h)]
        if hp.max_train_examples and len(histories) > hp.max_train_examples:
            histories = random.Random(hp.seed).sample(histories, hp.max_train_examples)
        self.examples = histories
        # Dev cases per mid-training evaluation (a fixed sample); the final one: all.
        limit = hp.eval_queries or _MID_EVAL_CASES
        dev = list(corpus.dev)
        self.mid_dev = dev if len(dev) <= limit else random.Random(hp.seed).sample(dev, limit)

    def num_examples(self) -> int:
        return len(self.examples)

    def num_batches(self) -> int:
        pool = self.hp.batch_size * _POOL_BATCHES
        full, rest = divmod(len(self.examples), pool)
        return full * _POOL_BATCHES + -(-rest // self.hp.batch_size)

    def batches(self, epoch: int) -> Iterator[tuple[np.ndarray, ...]]:
        rng = random.Random(self.hp.seed * 1000 + epoch)
        order = [augment_history(h, rng, self.hp.augment_prob) for h in self.examples]
        rng.shuffle(order)
        # Batches of similar lengths (padding to the longest of a random batch cost ~5x
        # on histories averaging 5 events), in random order.
        batches: list[Sequence[History]] = []
        for pool in _chunks(order, self.hp.batch_size * _POOL_BATCHES):
            pool = sorted(pool, key=lambda h: len(h.rows))
            batches.extend(_chunks(pool, self.hp.batch_size))
        rng.shuffle(batches)
        for histories in batches:
            # One more position than the model reads: inputs [:, :-1], targets [:, 1:].
            rows, kinds, gaps, mask = left_padded(
                [(h.rows, h.kinds, h.gaps) for h in histories], self.hp.history_length + 1
            )
            sampled = np.array(
                rng.sample(range(self.corpus.num_items), self.hp.sampled_negatives)
                if self.hp.sampled_negatives < self.corpus.num_items
                else [],
                dtype=np.int64,
            )
            yield rows, kinds, gaps, self._sources(kinds, gaps, mask), sampled

    def _has_target(self, history: History) -> bool:
        """Whether anything in ``history`` is predicted (one basket alone is not)."""
        if len(history.rows) < 2:
            return False
        kinds, gaps = np.array([history.kinds]), np.array([history.gaps])
        return bool((self._sources(kinds, gaps, np.ones_like(kinds)) >= 0).any())

    def _sources(self, kinds: np.ndarray, gaps: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Each position's predicting position (-1: not a target): the last event before
        its basket with ``basket_targets``, else the event before it."""
        if self.hp.basket_targets:
            return basket_sources(kinds, gaps, mask)
        sources = np.full(mask.shape, -1, dtype=np.int64)
        follows = (mask[:, 1:] > 0) & (mask[:, :-1] > 0)
        sources[:, 1:] = np.where(follows, np.arange(mask.shape[1] - 1), -1)
        return sources

    def _item_table(self, model: SequenceRecommender, rows: torch.Tensor) -> torch.Tensor:
        vectors = self.vectors[rows] if self.vectors is not None else None
        return model.items(vectors, rows)

    def loss(self, model: nn.Module, batch: tuple[np.ndarray, ...]) -> torch.Tensor:
        assert isinstance(model, SequenceRecommender)
        device = self.device.torch_device
        rows, kinds, gaps, sources, sampled = (torch.from_numpy(a).to(device) for a in batch)
        inputs = rows[:, :-1]
        if self.hp.sampled_negatives >= self.corpus.num_items:
            needed = torch.arange(self.corpus.num_items, device=device)
        else:
            needed = torch.unique(torch.cat([rows[rows >= 0], sampled]))
        where = torch.full((self.corpus.num_items,), -1, dtype=torch.long, device=device)
        where[needed] = torch.arange(len(needed), device=device)
        table = self._item_table(model, needed)
        # The shopper tower reads what the item tower serves: unit-length embeddings.
        history = model._key(table)[where[inputs.clamp(min=0)]]
        mask = (inputs >= 0).long()
        states = model.states(history, kinds[:, :-1], gaps[:, :-1], mask)
        # Every event with a predicting position is a target, read from that position's
        # state (inputs are positions 0..T-1, so a source is always an input).
        shopper, position = torch.nonzero(sources >= 0, as_tuple=True)
        if not len(shopper):  # augmentation can crop a history to one basket
            return states.sum() * 0.0
        source = sources[shopper, position]
        targets = where[rows[shopper, position]]
        logits = model.logits(states[shopper, source], table).float()
        # A basket's other products are no negatives for each of its products.
        group = shopper * rows.shape[1] + source
        sibling = (group[:, None] == group[None, :]) & (targets[:, None] != targets[None, :])
        if sibling.any():
            target_row, other = torch.nonzero(sibling, as_tuple=True)
            logits = logits.index_put((target_row, targets[other]), torch.tensor(-torch.inf))
        return nn.functional.cross_entropy(logits, targets)

    @torch.inference_mode()
    def evaluate(self, model: nn.Module, final: bool) -> dict[str, float]:
        assert isinstance(model, SequenceRecommender)
        cases = list(self.corpus.dev) if final else self.mid_dev
        return evaluate_cases(model, self.vectors, cases, self.device.torch_device)


@torch.inference_mode()
def rank_targets(
    model: SequenceRecommender,
    vectors: torch.Tensor | None,
    cases: Sequence[DevCase],
    device: torch.device,
) -> np.ndarray:
    """Each case's target rank (0 = first) in a full ranking of every item, the case's
    history items excluded (as RecBole's full-sort evaluation does)."""
    model.eval()
    num_items = model.spec.num_items
    all_rows = torch.arange(num_items, device=device)
    keys = model._key(model.items(vectors, all_rows))
    ranks = np.zeros(len(cases), dtype=np.int64)
    # Chunks of similar history lengths: each is padded to its longest.
    order = sorted(range(len(cases)), key=lambda i: len(cases[i].history.rows))
    for positions in _chunks(order, EVAL_BATCH):
        chunk = [cases[i] for i in positions]
        rows, kinds, gaps, mask = (
            torch.from_numpy(a).to(device)
            for a in left_padded(
                [(c.history.rows, c.history.kinds, c.history.gaps) for c in chunk],
                model.spec.history_length,
            )
        )
        history = keys[rows.clamp(min=0)]
        scores = (model.shopper(history, kinds, gaps, mask) @ keys.T).float()
        for i, case in enumerate(chunk):
            scores[i, list(case.history.rows)] = -torch.inf
        targets = torch.tensor([c.target for c in chunk], device=device)
        target_scores = scores[torch.arange(len(chunk), device=device), targets]
        ranks[positions] = (scores > target_scores[:, None]).sum(dim=1).cpu().numpy()
    return ranks


def evaluate_cases(
    model: SequenceRecommender,
    vectors: torch.Tensor | None,
    cases: Sequence[DevCase],
    device: torch.device,
) -> dict[str, float]:
    """Recall and NDCG at 10 and 50 over ``cases`` (full ranking)."""
    return next_item_metrics(rank_targets(model, vectors, cases, device))


# --- a training run --------------------------------------------------------------------


def starting_model(
    corpus: SequenceCorpus,
    hp: Hyperparameters,
    *,
    id_only: bool = False,
    dim: int | None = None,
    text_encoder: str = "base",
    init_checkpoint: Path | None = None,
) -> SequenceRecommender:
    """A fresh model for ``corpus``, or ``init_checkpoint``'s weights carried over (the
    products both know keep their residuals; new products start at 0)."""
    if id_only:
        width = dim or 64
    else:
        if corpus.vectors is None:
            raise ValueError("vectors: a text model needs the products' text vectors")
        width = int(corpus.vectors.shape[1])
    spec = SequenceSpec(
        num_items=corpus.num_items,
        dim=width,
        layers=hp.sequence_layers,
        heads=hp.sequence_heads,
        history_length=hp.history_length,
        dropout=hp.dropout,
        temperature=hp.temperature,
        text=not id_only,
        item_ids=hp.item_ids or id_only,
        text_encoder=text_encoder,
    )
    model = SequenceRecommender(spec)
    if init_checkpoint is None:
        return model
    previous, keys = SequenceRecommender.load(Path(init_checkpoint))
    old = previous.spec
    if (old.dim, old.layers, old.heads, old.text) != (spec.dim, spec.layers, spec.heads, spec.text):
        raise ValueError(
            f"init_checkpoint: {init_checkpoint} has another shape "
            f"(dim {old.dim}, {old.layers} layers, {old.heads} heads, text {old.text})"
        )
    state = previous.state_dict()
    own = model.state_dict()
    for name, value in state.items():
        if name.startswith("residuals.") or name not in own:
            continue
        if name == "position.weight":
            rows = min(len(value), len(own[name]))
            own[name][:rows] = value[:rows]
        else:
            own[name] = value
    if model.residuals is not None and previous.residuals is not None:
        old_rows = {key: row for row, key in enumerate(keys)}
        table = own["residuals.weight"]
        for row, key in enumerate(corpus.item_keys):
            if key in old_rows:
                table[row] = previous.residuals.weight[old_rows[key]].detach()
    model.load_state_dict(own)
    return model


def train_sequence_model(
    corpus: SequenceCorpus,
    out_dir: Path,
    hp: Hyperparameters | None = None,
    *,
    id_only: bool = False,
    dim: int | None = None,
    text_encoder: str = "base",
    data_fingerprint: str = "",
    init_checkpoint: Path | None = None,
    report=None,
    should_stop=None,
) -> TrainResult:
    """Train on ``corpus`` and save the best dev checkpoint to ``out_dir/checkpoint`` (and
    ``out_dir/history.json``); ``report`` and ``should_stop`` are the loop's."""
    import shutil
    import time

    from shared.training.loop import TrainingCancelled, fit, pick_device, seed_everything

    started = time.perf_counter()
    hp = hp or Hyperparameters.for_kind(SEQUENCE_RECOMMENDER)
    check_hyperparameters(hp)
    if not corpus.dev:
        raise ValueError("dev: no dev cases to evaluate and stop on")
    device = pick_device()
    seed_everything(hp.seed)
    model = starting_model(
        corpus,
        hp,
        id_only=id_only,
        dim=dim,
        text_encoder=text_encoder,
        init_checkpoint=init_checkpoint,
    )
    recipe = SequenceRecipe(corpus, hp, device)
    result = fit(model, recipe, hp, device, report=report, should_stop=should_stop)
    if should_stop is not None and should_stop():
        raise TrainingCancelled("stopped before the checkpoint was saved")
    out_dir = Path(out_dir)
    checkpoint = out_dir / "checkpoint"
    staging = out_dir / ".checkpoint.partial"
    shutil.rmtree(staging, ignore_errors=True)
    model.to("cpu").save(staging, corpus.item_keys)
    shutil.rmtree(checkpoint, ignore_errors=True)
    staging.rename(checkpoint)
    run = TrainResult(
        kind=SEQUENCE_RECOMMENDER,
        checkpoint_dir=checkpoint,
        dev_metrics=result.dev_metrics,
        history=result.history,
        data_fingerprint=data_fingerprint,
        hyperparameters=hp.to_dict(),
        seconds=round(time.perf_counter() - started, 2),
        train_examples=recipe.num_examples(),
        device=device.name,
    )
    record = {**asdict(run), "checkpoint_dir": str(checkpoint)}
    record.update(steps=result.steps, stopped_early=result.stopped_early, id_only=id_only)
    (out_dir / "history.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
    return run
