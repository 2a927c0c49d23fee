"""Training data: a WANDS-format folder, validated, split and turned into examples.

:func:`load_training_data` reads ``product.csv``, ``query.csv`` and ``label.csv`` once,
checks them (a :class:`DatasetError` names the file and what is wrong), fingerprints
their bytes and splits the queries into train and dev by a hash of the query id (15%
dev), so the split never changes when the file is reordered or extended.

The builders turn a :class:`TrainingData` into each model's examples. Product texts are
always :func:`shared.training.modules.product_text`, the text the served models read.
"""

from __future__ import annotations

import csv
import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from shared.data.catalog import Product
from shared.data.dataset import EXACT, PARTIAL, RELEVANCE_LABELS, Query
from shared.data.wands import product_from_row
from shared.models.kinds import CROSS_ENCODER, INTENT_CLASSIFIER, TEXT_ENCODER
from shared.search.bm25 import BM25Index
from shared.search.text import analyze
from shared.training.augment import PseudoQueryMaker

DEV_SHARE = 0.15
# Graded gains the cross-encoder learns (the metrics' 2/1/0, scaled to [0, 1]).
GAINS = {EXACT: 1.0, PARTIAL: 0.5}
# How many BM25 results hard negatives are mined from, and the rerank candidate list.
MINING_DEPTH = 30
CANDIDATES = 50
# Of a candidate list: how many slots BM25 fills first; judged products fill the rest.
_BM25_SLOTS = 40

_REQUIRED = {
    "product.csv": ("product_id", "product_name", "product_class"),
    "query.csv": ("query_id", "query"),
    "label.csv": ("query_id", "product_id", "label"),
}


class DatasetError(ValueError):
    """The training data cannot be used; the message names the file and the problem."""


@dataclass(frozen=True, slots=True)
class IntentExample:
    """A query text and the index of its class in ``TrainingData.classes``."""

    text: str
    label: int


@dataclass(frozen=True, slots=True)
class PairExample:
    """A query, the row of a relevant product and rows of hard-negative products."""

    query: str
    positive: int
    negatives: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class RankGroup:
    """A query with candidate product rows and their graded gains (one > 0 at least)."""

    query: str
    rows: tuple[int, ...]
    gains: tuple[float, ...]


@dataclass(slots=True)
class TrainingData:
    """A validated training folder: products, the train/dev split and its judgments."""

    dataset_dir: Path
    products: list[Product]
    train_queries: list[Query]
    dev_queries: list[Query]
    labels: dict[str, dict[str, str]]
    classes: list[str]
    fingerprint: str
    # Graded gains in [0, 1] from label.csv's optional ``gain`` column (judgments derived
    # from feedback, shared.training.clicks); empty when the folder has none.
    gains: dict[str, dict[str, float]] = field(default_factory=dict)
    row_of: dict[str, int] = field(default_factory=dict)
    _bm25: BM25Index | None = None

    def __post_init__(self) -> None:
        self.row_of = {p.product_id: i for i, p in enumerate(self.products)}

    def bm25(self) -> BM25Index:
        """A BM25 index over the products (row = position in ``products``), built once."""
        if self._bm25 is None:
            index = BM25Index()
            index.add_many(
                range(len(self.products)), (analyze(p.lexical_text()) for p in self.products)
            )
            self._bm25 = index
        return self._bm25

    def judged(self, query: Query) -> dict[int, str]:
        """Product row -> label of the query's judgments (products not in the catalog skipped)."""
        row_of = self.row_of
        return {
            row_of[pid]: label
            for pid, label in self.labels.get(query.query_id, {}).items()
            if pid in row_of
        }

    def candidates(self, query: Query, k: int = CANDIDATES) -> list[int]:
        """The rerank candidate list: BM25's top results, then judged products (sampled by
        a hash of the query id), then more BM25 results, ``k`` rows at most."""
        rows, _ = self.bm25().search(query.text, k)
        ranked = [int(r) for r in rows]
        out = ranked[:_BM25_SLOTS]
        seen = set(out)
        judged = sorted(r for r in self.judged(query) if r not in seen)
        random.Random(_hash(query.query_id)).shuffle(judged)
        for row in [*judged, *ranked[_BM25_SLOTS:]]:
            if len(out) >= k:
                break
            if row not in seen:
                seen.add(row)
                out.append(row)
        return out


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def is_dev(query_id: str) -> bool:
    """Whether a query belongs to the dev split (a stable hash of its id, 15%)."""
    return _hash(query_id) % 10_000 < DEV_SHARE * 10_000


def _read_table(path: Path, digest: hashlib._Hash) -> list[dict[str, str]]:
    """Rows of a tab-separated file, checked: required columns, one cell per column."""
    if not path.is_file():
        raise DatasetError(f"{path}: file is missing")
    data = path.read_bytes()
    digest.update(path.name.encode("utf-8") + b"\0" + data + b"\0")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text ({exc})") from None
    reader = csv.reader(text.splitlines(), delimiter="\t", quotechar='"')
    header = next(reader, None)
    if header is None or not any(h.strip() for h in header):
        raise DatasetError(f"{path}: file is empty")
    header = [h.strip().lstrip("\ufeff") for h in header]
    missing = [c for c in _REQUIRED[path.name] if c not in header]
    if missing:
        raise DatasetError(f"{path}: header lacks column(s) {', '.join(missing)}; got {header}")
    rows = []
    for line, row in enumerate(reader, start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise DatasetError(
                f"{path}: line {line} has {len(row)} columns, expected {len(header)}"
            )
        rows.append(dict(zip(header, row, strict=True)))
    if not rows:
        raise DatasetError(f"{path}: file has a header but no rows")
    return rows


def load_training_data(
    dataset_dir: Path, kind: str | None = None, classes: Sequence[str] | None = None
) -> TrainingData:
    """Read and validate a WANDS-format training folder.

    ``kind`` (a model kind) adds that model's requirements: judged queries for the
    text encoder and the cross-encoder, classes for the classifier. ``classes`` fixes
    the classifier's label set (default: every class named by a product or a query);
    each must have a product or a training query.
    """
    directory = Path(dataset_dir)
    if not directory.is_dir():
        raise DatasetError(f"{directory}: dataset folder does not exist")
    digest = hashlib.sha256()
    product_rows = _read_table(directory / "product.csv", digest)
    query_rows = _read_table(directory / "query.csv", digest)
    label_path = directory / "label.csv"
    needs_labels = kind in (TEXT_ENCODER, CROSS_ENCODER)
    label_rows = _read_table(label_path, digest) if needs_labels or label_path.exists() else []

    products = [product_from_row(r) for r in product_rows]
    for line, product in enumerate(products, start=2):
        if not product.product_id:
            raise DatasetError(f"{directory / 'product.csv'}: line {line} has no product_id")
    queries = []
    for line, row in enumerate(query_rows, start=2):
        query_id, text = row["query_id"].strip(), row["query"].strip()
        if not query_id or not text:
            raise DatasetError(f"{directory / 'query.csv'}: line {line} lacks query_id or query")
        queries.append(Query(query_id, text, (row.get("query_class") or "").strip() or None))
    labels: dict[str, dict[str, str]] = {}
    gains: dict[str, dict[str, float]] = {}
    for line, row in enumerate(label_rows, start=2):
        label = row["label"].strip()
        if label not in RELEVANCE_LABELS:
            raise DatasetError(
                f"{label_path}: line {line} has label {label!r}, expected one of {RELEVANCE_LABELS}"
            )
        qid, pid = row["query_id"].strip(), row["product_id"].strip()
        labels.setdefault(qid, {})[pid] = label
        if "gain" in row:
            gains.setdefault(qid, {})[pid] = _gain(row["gain"], label_path, line)

    if needs_labels:
        queries = [q for q in queries if labels.get(q.query_id)]
        if not queries:
            raise DatasetError(f"{label_path}: no query of query.csv has a judgment")
    if kind == INTENT_CLASSIFIER:
        queries = [q for q in queries if q.query_class]
    train = [q for q in queries if not is_dev(q.query_id)]
    dev = [q for q in queries if is_dev(q.query_id)]
    if not dev and len(train) > 1:  # tiny stores: keep at least one dev query
        dev.append(train.pop(min(range(len(train)), key=lambda i: _hash(train[i].query_id))))

    named = sorted({p.product_class for p in products if p.product_class})
    named = sorted({*named, *(q.query_class for q in queries if q.query_class)})
    label_set = list(classes) if classes is not None else named
    if kind == INTENT_CLASSIFIER:
        if not label_set:
            raise DatasetError(f"{directory / 'query.csv'}: no query or product names a class")
        _check_classes(directory, label_set, products, train, dev)
    return TrainingData(
        dataset_dir=directory,
        products=products,
        train_queries=train,
        dev_queries=dev,
        labels=labels,
        classes=label_set,
        fingerprint=digest.hexdigest(),
        gains=gains,
    )


def _gain(text: str, path: Path, line: int) -> float:
    try:
        gain = float(text)
    except ValueError:
        raise DatasetError(f"{path}: line {line} has gain {text!r}, not a number") from None
    if not 0.0 <= gain <= 1.0:
        raise DatasetError(f"{path}: line {line} has gain {gain}, outside [0, 1]")
    return gain


def _check_classes(
    directory: Path,
    classes: Sequence[str],
    products: list[Product],
    train: list[Query],
    dev: list[Query],
) -> None:
    """Every class must be learnable: a product of it or a training query asking for it."""
    known = set(classes)
    for query in dev + train:
        if query.query_class not in known:
            raise DatasetError(
                f"{directory / 'query.csv'}: query {query.query_id} names class "
                f"{query.query_class!r}, which is not in the classes list"
            )
    covered = {p.product_class for p in products} | {q.query_class for q in train}
    for name in classes:
        if name not in covered:
            raise DatasetError(
                f"{directory}: class {name!r} is missing from the data "
                "(no product in product.csv and no training query in query.csv)"
            )


# ---------------------------------------------------------------------------- builders
def _cap(examples: list, limit: int, rng: random.Random, keep_first: int = 0) -> list:
    """At most ``limit`` examples (0 = all): the first ``keep_first`` kept, the rest sampled."""
    if not limit or len(examples) <= limit:
        return examples
    head = examples[: min(keep_first, limit)]
    tail = examples[len(head) :]
    return head + rng.sample(tail, limit - len(head))


def _pseudo_products(n_products: int, per_product: float, rng: random.Random) -> list[int]:
    """Rows to make pseudo-queries from: ``per_product`` per product, on average."""
    whole, fraction = int(per_product), per_product - int(per_product)
    return [
        row
        for row in range(n_products)
        for _ in range(whole + (1 if rng.random() < fraction else 0))
    ]


def intent_examples(
    data: TrainingData, pseudo_queries_per_product: float, max_examples: int, seed: int
) -> list[IntentExample]:
    """Training queries with their class, then pseudo-queries from product titles."""
    rng = random.Random(seed)
    class_index = {name: i for i, name in enumerate(data.classes)}
    examples = [
        IntentExample(q.text, class_index[q.query_class])
        for q in data.train_queries
        if q.query_class in class_index
    ]
    n_real = len(examples)
    maker = PseudoQueryMaker(data.products)
    for row in _pseudo_products(len(data.products), pseudo_queries_per_product, rng):
        product = data.products[row]
        if product.product_class in class_index:
            examples.append(
                IntentExample(maker.make(product, rng), class_index[product.product_class])
            )
    return _cap(examples, max_examples, rng, keep_first=n_real)


def _hard_negatives(
    data: TrainingData,
    text: str,
    query_class: str | None,
    judged: dict[int, str],
    n: int,
    rng: random.Random,
) -> tuple[int, ...]:
    """``n`` of BM25's top products that are judged Irrelevant, or unjudged and of
    another class than the query's."""
    if n <= 0:
        return ()
    rows, _ = data.bm25().search(text, MINING_DEPTH)
    eligible = []
    for r in (int(x) for x in rows):
        label = judged.get(r)
        if label is None:
            if query_class and data.products[r].product_class == query_class:
                continue
        elif label != "Irrelevant":
            continue
        eligible.append(r)
    if len(eligible) < n:  # a few random products of another class fill the gap
        others = [
            r
            for r in rng.sample(range(len(data.products)), min(len(data.products), 4 * n))
            if data.products[r].product_class != query_class and r not in judged
        ]
        eligible.extend(others)
    return tuple(rng.sample(eligible[: max(n, 10)], min(n, len(eligible))))


def pair_examples(
    data: TrainingData,
    hard_negatives: int,
    pseudo_queries_per_product: float,
    max_examples: int,
    seed: int,
) -> list[PairExample]:
    """Bi-encoder examples: (query, an Exact product) per training query (Partial when a
    query has no Exact one), then (pseudo-query, its product), each with hard negatives."""
    rng = random.Random(seed)
    examples = []
    for query in data.train_queries:
        judged = data.judged(query)
        positives = sorted(r for r, lab in judged.items() if lab == EXACT) or sorted(
            r for r, lab in judged.items() if lab == PARTIAL
        )
        for positive in rng.sample(positives, min(2, len(positives))):
            negatives = _hard_negatives(
                data, query.text, query.query_class, judged, hard_negatives, rng
            )
            examples.append(PairExample(query.text, positive, negatives))
    n_real = len(examples)
    rng.shuffle(examples)
    maker = PseudoQueryMaker(data.products)
    for row in _pseudo_products(len(data.products), pseudo_queries_per_product, rng):
        product = data.products[row]
        text = maker.make(product, rng)
        negatives = _hard_negatives(
            data, text, product.product_class, {row: EXACT}, hard_negatives, rng
        )
        examples.append(PairExample(text, row, negatives))
    limit = max_examples
    keep = min(n_real, int(0.8 * limit)) if limit else n_real
    return _cap(examples, limit, rng, keep_first=keep)


def rank_groups(
    data: TrainingData, group_size: int, max_examples: int, seed: int
) -> list[RankGroup]:
    """Cross-encoder groups: per training query, one Exact (else Partial) product and
    ``group_size - 1`` others drawn from its rerank candidate list (BM25's top results
    and judged products), with graded gains Exact 1.0, Partial 0.5, otherwise 0."""
    rng = random.Random(seed)
    queries = list(data.train_queries)
    rng.shuffle(queries)
    if max_examples:
        queries = queries[:max_examples]
    groups = []
    for query in queries:
        if data.gains:
            groups += _gain_groups(data, query, group_size, rng)
            continue
        judged = data.judged(query)
        best = sorted(r for r, lab in judged.items() if lab == EXACT) or sorted(
            r for r, lab in judged.items() if lab == PARTIAL
        )
        if not best:
            continue
        first = rng.choice(best)
        pool = [r for r in data.candidates(query) if r != first]
        others = rng.sample(pool, min(group_size - 1, len(pool)))
        rows = (first, *others)
        gains = tuple(GAINS.get(judged.get(r, ""), 0.0) for r in rows)
        groups.append(RankGroup(query.text, rows, gains))
    return groups


def _gain_groups(
    data: TrainingData, query: Query, group_size: int, rng: random.Random
) -> list[RankGroup]:
    """Groups of a query judged by gains (feedback): its best product, other products the
    shoppers saw with their gains, and as many of the candidates they were never shown
    (ranked below the page by the version that served) with gain 0.

    The unshown candidates keep the model's sense of what is irrelevant: the shown ones are
    the serving ranking's top, nearly all relevant, and a model trained on them alone
    forgets the rest of the candidate list it will rerank."""
    row_of = data.row_of
    gains = {
        row_of[pid]: gain
        for pid, gain in data.gains.get(query.query_id, {}).items()
        if pid in row_of
    }
    if len(gains) < 2 or max(gains.values()) <= 0.0:
        return []
    best = max(sorted(gains), key=lambda r: gains[r])
    shown = [r for r in sorted(gains) if r != best]
    rng.shuffle(shown)
    unshown = [r for r in data.candidates(query) if r not in gains]
    step = max(1, (group_size - 1) // 2)
    groups = []
    for start in range(0, len(shown), step):
        chunk = shown[start : start + step]
        others = rng.sample(unshown, min(group_size - 1 - len(chunk), len(unshown)))
        rows = (best, *chunk, *others)
        groups.append(RankGroup(query.text, rows, tuple(gains.get(r, 0.0) for r in rows)))
    return groups


def sample_rows(n: int, k: int, seed: int, must: Sequence[int] = ()) -> np.ndarray:
    """``k`` distinct rows of ``range(n)`` (all when k is 0 or >= n), ``must`` included."""
    if not k or k >= n:
        return np.arange(n)
    chosen = dict.fromkeys(int(r) for r in must[:k])
    rng = np.random.default_rng(seed)
    for r in rng.permutation(n):
        if len(chosen) >= k:
            break
        chosen.setdefault(int(r))
    return np.array(sorted(chosen), dtype=np.int64)
