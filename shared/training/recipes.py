"""What each model kind contributes to the training loop: batches, loss, dev metrics.

- ``intent_classifier``: cross-entropy with label smoothing over the store's classes;
  dev ``intent_top1`` / ``intent_top3``.
- ``text_encoder``: contrastive loss on scaled cosine similarities, symmetric (query to
  products and product to queries), with in-batch and BM25-mined hard negatives; in-batch
  products of the query's own class are masked out (they are relevant, not negatives).
  With a teacher cross-encoder, plus ``distill_weight`` x margin-MSE between the
  student's and the teacher's (positive - hard negative) score margins. Dev
  ``ndcg@10``, ``recall@100``, ``mrr@10`` of dense retrieval.
- ``cross_encoder``: listwise softmax cross-entropy per query group against the
  normalised graded gains (default), or pointwise BCE on the gains; dev ``ndcg@10``,
  ``mrr@10`` of reranking each dev query's 50-product candidate list.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from shared.data.dataset import Query
from shared.evaluation.metrics import intent_accuracy, mrr_at_k, ndcg_at_k, recall_at_k
from shared.models.kinds import CROSS_ENCODER
from shared.models.tokenization import Tokenizer
from shared.training.augment import augment_query
from shared.training.data import (
    IntentExample,
    PairExample,
    RankGroup,
    TrainingData,
    intent_examples,
    pair_examples,
    rank_groups,
    sample_rows,
)
from shared.training.hyperparams import HyperparameterError, Hyperparameters
from shared.training.loop import Device
from shared.training.modules import ShopsenseModel, product_text

EVAL_BATCH = 128
# Judged products of each evaluated query put into a subsampled retrieval corpus.
_JUDGED_PER_QUERY = 20


def _tensors(arrays: Sequence[np.ndarray], device: torch.device) -> list[torch.Tensor]:
    return [torch.from_numpy(a).to(device) for a in arrays]


def _chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _mean(values: list[float]) -> float:
    return float(sum(values) / len(values)) if values else 0.0


def _eval_queries(data: TrainingData, limit: int, judged_only: bool) -> list[Query]:
    queries = [q for q in data.dev_queries if not judged_only or data.labels.get(q.query_id)]
    return queries[:limit] if limit else queries


class _Base:
    """Shared plumbing: tokenizer, device, per-epoch shuffling."""

    primary_metric = ""

    def __init__(self, data: TrainingData, hp: Hyperparameters, device: Device) -> None:
        self.data, self.hp, self.device = data, hp, device
        self.tokenizer = Tokenizer()
        self.examples: list = []

    def num_examples(self) -> int:
        """Training examples per epoch."""
        return len(self.examples)

    def _per_batch(self) -> int:
        return self.hp.batch_size

    def num_batches(self) -> int:
        """Batches per epoch."""
        return -(-len(self.examples) // self._per_batch())

    def _epoch(self, epoch: int) -> tuple[list, random.Random]:
        rng = random.Random(self.hp.seed * 1000 + epoch)
        order = list(self.examples)
        rng.shuffle(order)
        return order, rng

    def _augment(self, text: str, rng: random.Random) -> str:
        return augment_query(text, rng, self.hp.augment_prob)

    def _teacher(self, teacher: ShopsenseModel | None) -> ShopsenseModel | None:
        """A teacher cross-encoder to distil from, on this recipe's device (eval mode)."""
        if teacher is None:
            return None
        if teacher.spec.kind != CROSS_ENCODER:
            raise ValueError(
                f"teacher_checkpoint: must be a cross_encoder, got {teacher.spec.kind}"
            )
        return teacher.to(self.device.torch_device).eval()


# Products per class averaged into a prototype, and the prototypes' logit scale (the
# intent service's softmax temperature is 0.05).
PROTOTYPE_PRODUCTS = 16
PROTOTYPE_SCALE = 20.0


class IntentRecipe(_Base):
    """Query -> class."""

    primary_metric = "intent_top1"

    def __init__(self, data: TrainingData, hp: Hyperparameters, device: Device) -> None:
        super().__init__(data, hp, device)
        self.examples: list[IntentExample] = intent_examples(
            data, hp.pseudo_queries_per_product, hp.max_train_examples, hp.seed
        )
        self._loss = nn.CrossEntropyLoss(label_smoothing=hp.label_smoothing)

    @torch.inference_mode()
    def initialise(self, model: nn.Module) -> None:
        """Start the head at the zero-shot prototypes, so training starts from the
        foundation's accuracy instead of chance: each class's row is
        ``PROTOTYPE_SCALE * normalise(0.7 * centroid + 0.3 * name)``, the centroid being
        the mean embedding of up to ``PROTOTYPE_PRODUCTS`` of its products (as the intent
        service's prototypes, shared/intent/prototypes.py)."""
        model.eval()
        rng = random.Random(self.hp.seed)
        by_class: dict[str, list[str]] = {}
        for product in self.data.products:
            by_class.setdefault(product.product_class, []).append(product_text(product))
        rows = []
        for name in self.data.classes:
            texts = by_class.get(name, [])
            sample = rng.sample(texts, min(PROTOTYPE_PRODUCTS, len(texts)))
            vectors = self._embed(model, [name, *sample])
            named, centroid = vectors[0], vectors[1:].mean(dim=0) if sample else vectors[0]
            centroid = nn.functional.normalize(centroid, dim=0)
            rows.append(nn.functional.normalize(0.7 * centroid + 0.3 * named, dim=0))
        head = model.head
        head.weight.copy_(torch.stack(rows).to(head.weight) * PROTOTYPE_SCALE)
        head.bias.zero_()

    def _embed(self, model: nn.Module, texts: Sequence[str]) -> torch.Tensor:
        """Unit mean-pooled embeddings of the model's transformer (no head)."""
        from shared.training.modules import mean_pool

        ids, mask = _tensors(self.tokenizer.encode(list(texts), 48), self.device.torch_device)
        tokens = model.bert(input_ids=ids, attention_mask=mask)[0]
        return nn.functional.normalize(mean_pool(tokens, mask).float(), dim=1)

    def batches(self, epoch: int) -> Iterator[tuple[list[torch.Tensor], torch.Tensor]]:
        """Shuffled, augmented, tokenized batches of (inputs, class indices)."""
        order, rng = self._epoch(epoch)
        for chunk in _chunks(order, self.hp.batch_size):
            texts = [self._augment(e.text, rng) for e in chunk]
            inputs = _tensors(
                self.tokenizer.encode(texts, self.hp.max_length), self.device.torch_device
            )
            labels = torch.tensor([e.label for e in chunk], device=self.device.torch_device)
            yield inputs, labels

    def loss(
        self, model: nn.Module, batch: tuple[list[torch.Tensor], torch.Tensor]
    ) -> torch.Tensor:
        """Cross-entropy with label smoothing."""
        inputs, labels = batch
        return self._loss(model(*inputs).float(), labels)

    @torch.inference_mode()
    def predict(self, model: nn.Module, texts: Sequence[str], k: int = 3) -> list[list[str]]:
        """The top ``k`` classes of each text, best first."""
        out = []
        for chunk in _chunks(list(texts), EVAL_BATCH):
            inputs = _tensors(
                self.tokenizer.encode(chunk, self.hp.max_length), self.device.torch_device
            )
            with self.device.autocast():
                logits = model(*inputs).float()
            top = logits.topk(min(k, logits.shape[1]), dim=1).indices.cpu().tolist()
            out.extend([self.data.classes[i] for i in row] for row in top)
        return out

    def evaluate(self, model: nn.Module, final: bool) -> dict[str, float]:
        """Top-1 / top-3 accuracy on the dev queries."""
        queries = _eval_queries(self.data, 0 if final else self.hp.eval_queries, False)
        predicted = self.predict(model, [q.text for q in queries])
        scores = intent_accuracy(
            {q.query_id: p for q, p in zip(queries, predicted, strict=True)},
            {q.query_id: q.query_class for q in queries},
        )
        return {"intent_top1": float(scores["top1"]), "intent_top3": float(scores["top3"])}


@dataclass
class _PairBatch:
    queries: list[torch.Tensor]
    docs: list[torch.Tensor]
    n_pos: int
    mask: torch.Tensor  # [B, n_docs] True where an in-batch product is not a negative
    query_mask: torch.Tensor  # [B, B] True where another query is not a negative
    pair_texts: tuple[list[str], list[str], list[str]]  # queries, positives, first negatives
    first_negative: torch.Tensor  # [B] column of each query's first hard negative in docs
    has_negative: torch.Tensor  # [B] whether the query has a hard negative


class EncoderRecipe(_Base):
    """Bi-encoder: query and product embeddings, contrastive."""

    primary_metric = "ndcg@10"

    def __init__(
        self,
        data: TrainingData,
        hp: Hyperparameters,
        device: Device,
        teacher: ShopsenseModel | None = None,
    ) -> None:
        super().__init__(data, hp, device)
        if teacher is not None and hp.hard_negatives < 1:
            raise HyperparameterError(
                "hard_negatives", "distillation needs at least 1 hard negative, got 0"
            )
        self.teacher = self._teacher(teacher)
        self.examples: list[PairExample] = pair_examples(
            data, hp.hard_negatives, hp.pseudo_queries_per_product, hp.max_train_examples, hp.seed
        )
        self.texts = [product_text(p) for p in data.products]
        self.class_of = [p.product_class for p in data.products]

    def batches(self, epoch: int) -> Iterator[_PairBatch]:
        """Query batches with their positives then their hard negatives as documents."""
        order, rng = self._epoch(epoch)
        dev = self.device.torch_device
        for chunk in _chunks(order, self.hp.batch_size):
            queries = [self._augment(e.query, rng) for e in chunk]
            rows = [e.positive for e in chunk] + [r for e in chunk for r in e.negatives]
            docs = [self.texts[r] for r in rows]
            classes = [self.class_of[e.positive] for e in chunk]
            doc_classes = [self.class_of[r] for r in rows]
            mask = torch.tensor(
                [
                    [j != i and dc == c for j, dc in enumerate(doc_classes)]
                    for i, c in enumerate(classes)
                ],
                device=dev,
            )
            query_mask = mask[:, : len(chunk)].T.contiguous()
            first_neg = [self.texts[e.negatives[0]] if e.negatives else "" for e in chunk]
            columns, column = [], len(chunk)
            for i, e in enumerate(chunk):
                columns.append(column if e.negatives else i)
                column += len(e.negatives)
            yield _PairBatch(
                _tensors(self.tokenizer.encode(queries, self.hp.max_length), dev),
                _tensors(self.tokenizer.encode(docs, self.hp.doc_max_length), dev),
                len(chunk),
                mask,
                query_mask,
                (queries, [self.texts[e.positive] for e in chunk], first_neg),
                torch.tensor(columns, device=dev),
                torch.tensor([bool(e.negatives) for e in chunk], device=dev),
            )

    def loss(self, model: nn.Module, batch: _PairBatch) -> torch.Tensor:
        """Symmetric contrastive loss (+ margin-MSE distillation with a teacher)."""
        q = model(*batch.queries).float()
        d = model(*batch.docs).float()
        scale = 1.0 / self.hp.temperature
        scores = (q @ d.T * scale).masked_fill(batch.mask, float("-inf"))
        target = torch.arange(batch.n_pos, device=q.device)
        loss = nn.functional.cross_entropy(scores, target)
        back = (d[: batch.n_pos] @ q.T * scale).masked_fill(batch.query_mask, float("-inf"))
        loss = (loss + nn.functional.cross_entropy(back, target)) / 2
        if self.teacher is not None and self.hp.distill_weight > 0 and batch.has_negative.any():
            n = batch.n_pos
            margin = ((q * d[:n]).sum(dim=1) - (q * d[batch.first_negative]).sum(dim=1)) * scale
            keep = batch.has_negative
            loss = loss + self.hp.distill_weight * nn.functional.mse_loss(
                margin[keep], self._teacher_margin(batch)[keep]
            )
        return loss

    @torch.no_grad()
    def _teacher_margin(self, batch: _PairBatch) -> torch.Tensor:
        assert self.teacher is not None
        queries, positives, negatives = batch.pair_texts
        dev = self.device.torch_device
        pairs = self.tokenizer.encode_pairs(
            queries + queries, positives + negatives, self.teacher.spec.doc_max_length
        )
        logits = self.teacher(*_tensors(pairs, dev)).float()
        n = len(queries)
        return logits[:n] - logits[n:]

    @torch.inference_mode()
    def encode(self, model: nn.Module, texts: Sequence[str], max_length: int) -> torch.Tensor:
        """Unit embeddings of ``texts`` (batched by length to keep padding small)."""
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = torch.empty((len(texts), 0))
        parts = []
        for chunk in _chunks(order, EVAL_BATCH):
            inputs = _tensors(
                self.tokenizer.encode([texts[i] for i in chunk], max_length),
                self.device.torch_device,
            )
            with self.device.autocast():
                parts.append(model(*inputs).float().cpu())
        if parts:
            out = torch.cat(parts)[torch.argsort(torch.tensor(order))]
        return out

    def evaluate(self, model: nn.Module, final: bool) -> dict[str, float]:
        """Dense retrieval over a sampled corpus that holds judged products of the evaluated
        queries (judgments outside it are ignored). The final evaluation uses the same
        sample: the trainer's offline evaluation measures the exported model on the whole
        catalog, so embedding it twice would only spend the time budget."""
        queries = _eval_queries(self.data, self.hp.eval_queries, True)
        must = [r for q in queries for r in sorted(self.data.judged(q))[:_JUDGED_PER_QUERY]]
        rows = sample_rows(len(self.texts), self.hp.eval_products, self.hp.seed, must)
        corpus = self.encode(model, [self.texts[r] for r in rows], self.hp.doc_max_length)
        vectors = self.encode(model, [q.text for q in queries], self.hp.max_length)
        k = min(100, len(rows))
        top = (vectors @ corpus.T).topk(k, dim=1).indices.numpy()
        in_corpus = {self.data.products[r].product_id for r in rows}
        ndcg, recall, mrr = [], [], []
        for query, hits in zip(queries, top, strict=True):
            judgments = {
                pid: lab
                for pid, lab in self.data.labels[query.query_id].items()
                if pid in in_corpus
            }
            if not any(lab in ("Exact", "Partial") for lab in judgments.values()):
                continue
            ranked = [self.data.products[rows[i]].product_id for i in hits]
            ndcg.append(ndcg_at_k(ranked, judgments, 10))
            recall.append(recall_at_k(ranked, judgments, 100))
            if "Exact" in judgments.values():
                mrr.append(mrr_at_k(ranked, judgments, 10))
        return {"ndcg@10": _mean(ndcg), "recall@100": _mean(recall), "mrr@10": _mean(mrr)}


@dataclass
class _GroupBatch:
    pairs: list[torch.Tensor]
    gains: torch.Tensor
    sizes: list[int]


class CrossEncoderRecipe(_Base):
    """Cross-encoder: one relevance logit per (query, product) pair."""

    primary_metric = "ndcg@10"

    def __init__(
        self,
        data: TrainingData,
        hp: Hyperparameters,
        device: Device,
        teacher: ShopsenseModel | None = None,
    ) -> None:
        super().__init__(data, hp, device)
        self.teacher = self._teacher(teacher)
        self.examples: list[RankGroup] = rank_groups(
            data, hp.group_size, hp.max_train_examples, hp.seed
        )
        self.texts = [product_text(p) for p in data.products]
        self._candidates: dict[str, list[int]] = {}

    def _per_batch(self) -> int:
        return max(1, self.hp.batch_size // self.hp.group_size)

    def batches(self, epoch: int) -> Iterator[_GroupBatch]:
        """Batches of whole query groups (``batch_size // group_size`` groups)."""
        order, rng = self._epoch(epoch)
        dev = self.device.torch_device
        for chunk in _chunks(order, self._per_batch()):
            queries = [self._augment(g.query, rng) for g in chunk]
            left = [q for q, g in zip(queries, chunk, strict=True) for _ in g.rows]
            right = [self.texts[r] for g in chunk for r in g.rows]
            pairs = self.tokenizer.encode_pairs(left, right, self.hp.doc_max_length)
            gains = torch.tensor([x for g in chunk for x in g.gains], device=dev)
            yield _GroupBatch(_tensors(pairs, dev), gains, [len(g.rows) for g in chunk])

    def loss(self, model: nn.Module, batch: _GroupBatch) -> torch.Tensor:
        """Listwise softmax CE against normalised gains per group, or pointwise BCE; with a
        teacher, plus ``distill_weight`` x the MSE between this model's logits and the
        teacher's on the same pairs."""
        logits = model(*batch.pairs).float()
        if self.hp.cross_encoder_loss == "pointwise":
            loss = nn.functional.binary_cross_entropy_with_logits(logits, batch.gains)
        else:
            losses = []
            for scores, gains in zip(
                logits.split(batch.sizes), batch.gains.split(batch.sizes), strict=True
            ):
                target = gains / gains.sum().clamp(min=1e-9)
                losses.append(-(target * nn.functional.log_softmax(scores, dim=0)).sum())
            loss = torch.stack(losses).mean()
        if self.teacher is not None and self.hp.distill_weight > 0:
            with torch.no_grad():
                taught = self.teacher(*batch.pairs).float()
            loss = loss + self.hp.distill_weight * nn.functional.mse_loss(logits, taught)
        return loss

    def candidates(self, query: Query) -> list[int]:
        """The query's rerank candidate list (cached)."""
        if query.query_id not in self._candidates:
            self._candidates[query.query_id] = self.data.candidates(query)
        return self._candidates[query.query_id]

    @torch.inference_mode()
    def score(self, model: nn.Module, query: str, rows: Sequence[int]) -> np.ndarray:
        """Relevance logits of ``query`` with each product row."""
        pairs = self.tokenizer.encode_pairs(
            [query] * len(rows), [self.texts[r] for r in rows], self.hp.doc_max_length
        )
        with self.device.autocast():
            return model(*_tensors(pairs, self.device.torch_device)).float().cpu().numpy()

    def evaluate(self, model: nn.Module, final: bool) -> dict[str, float]:
        """nDCG@10 and MRR@10 of reranking each dev query's candidate list."""
        return self._rank_metrics(model, _eval_queries(self.data, self.hp.eval_queries, True))

    def baseline(self) -> dict[str, float]:
        """The same metrics for the candidate lists in their BM25 order (no model)."""
        return self._rank_metrics(None, _eval_queries(self.data, self.hp.eval_queries, True))

    def _rank_metrics(self, model: nn.Module | None, queries: list[Query]) -> dict[str, float]:
        ndcg, mrr = [], []
        for query in queries:
            rows = self.candidates(query)
            if not rows:
                continue
            if model is not None:
                scores = self.score(model, query.text, rows)
                rows = [rows[i] for i in np.argsort(-scores, kind="stable")]
            judgments = self.data.labels[query.query_id]
            ranked = [self.data.products[r].product_id for r in rows]
            if any(lab in ("Exact", "Partial") for lab in judgments.values()):
                ndcg.append(ndcg_at_k(ranked, judgments, 10))
            if "Exact" in judgments.values():
                mrr.append(mrr_at_k(ranked, judgments, 10))
        return {"ndcg@10": _mean(ndcg), "mrr@10": _mean(mrr)}
