"""Offline evaluation of a model version on the dev judgments, in one process.

The trainer runs this after exporting a candidate version: the whole search pipeline is
assembled in this process from ONNX files (the candidate in its slot, the serving
versions of the other two models in theirs), with the same catalog index, feature scorer
and cross-encoder blend the services use, and measured on the training dataset's dev
queries (never on the held-out queries `make eval` reports). Metrics, all means over the
dev queries (keys as stored in the registry):

- ``intent/top1``, ``intent/top3``: the classifier (or the zero-shot prototypes);
- ``zero_shot/top1``, ``zero_shot/top3``: the zero-shot prototypes alone (class names and
  catalog centroids embedded by this pipeline's text encoder, as intent serves them without
  a classifier), the classifier's baseline;
- ``dense/…``: dense retrieval alone with this text encoder;
- ``retrieval/…``: the retrieval service's hybrid order (BM25 + dense + intent boost);
- ``pipeline/…``: after ranking (features, plus the cross-encoder when there is one);
- ``bm25/…``: BM25 alone, the keyword baseline;
each ``…`` being ``ndcg@10``, ``recall@100`` and ``mrr@10``.

Catalog embeddings are cached per (model file, engine, catalog) under ``<state>/offline-eval``.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shared.data.catalog import Product
from shared.data.dataset import Query
from shared.evaluation.metrics import evaluate_run, intent_accuracy
from shared.intent.attributes import AttributeMatcher
from shared.intent.prototypes import Prototypes, build_prototypes
from shared.models.onnx_runtime import OnnxModel, OnnxSentenceEncoder
from shared.models.tokenization import Tokenizer
from shared.models.triton_python_model import read_spec
from shared.paths import state_dir
from shared.ranking.features import FeatureScorer, RankInput, intent_boost_for
from shared.ranking.rerank import DEFAULT_DEPTH, DEFAULT_WEIGHT, rerank_head
from shared.search.catalog_index import CatalogIndex
from shared.search.retrieval import RetrieveOptions

CANDIDATES = 100
QUERY_TOKENS = 32
PRODUCT_TOKENS = 64
PAIR_TOKENS = 64
EMBED_BATCH = 64
# Stages of LocalPipeline.search that are predicted classes, and their metrics' prefix.
CLASS_STAGES = {"classes": "intent", "zero_shot": "zero_shot"}


@dataclass
class LocalPipeline:
    """The search pipeline in one process, built from exported model folders.

    ``text_encoder`` is required; without ``intent_classifier`` the zero-shot prototypes
    classify; without ``cross_encoder`` the features alone rank.
    """

    products: Sequence[Product]
    text_encoder: Path
    intent_classifier: Path | None = None
    cross_encoder: Path | None = None
    rerank_depth: int = DEFAULT_DEPTH
    rerank_weight: float = DEFAULT_WEIGHT
    cache_dir: Path | None = None
    progress: Callable[[str], None] | None = None
    # An existing catalog store (a SQLAlchemy URL or a SQLite file's path; e.g. the running
    # suite's) to search instead of indexing ``products``; its vectors must be this text
    # encoder's.
    catalog_db: str | Path | None = None

    def __post_init__(self) -> None:
        self.tokenizer = Tokenizer()
        self.encoder = OnnxSentenceEncoder.for_version(Path(self.text_encoder))
        self.classifier = self.labels = None
        if self.intent_classifier is not None:
            self.classifier = OnnxModel.for_version(Path(self.intent_classifier))
            self.labels = list(read_spec(Path(self.intent_classifier))["labels"])
        self.reranker = None
        if self.cross_encoder is not None:
            self.reranker = OnnxModel.for_version(Path(self.cross_encoder))
        self._workdir = None
        if self.catalog_db is not None:
            self.index = CatalogIndex.open(self.catalog_db)
        else:
            self._workdir = tempfile.TemporaryDirectory(prefix="shopsense-offline-eval-")
            self.index = CatalogIndex.open(Path(self._workdir.name) / "catalog.db")
            vectors = self._catalog_vectors()
            for start in range(0, len(self.products), 1024):
                self.index.upsert(
                    list(self.products[start : start + 1024]),
                    vectors[start : start + 1024],
                    "eval",
                )
        centroids = {c: v for c, (_, v) in self.index.class_centroids().items()}
        names = sorted(centroids)
        self.prototypes: Prototypes = build_prototypes(
            dict(zip(names, self.embed(names, 16), strict=True)), centroids, "prototypes"
        )
        self.attributes = AttributeMatcher(self.index.attribute_values())
        # The weights the services pick for this pipeline's intent source.
        source = "intent_classifier/" if self.classifier is not None else ""
        self.scorer = FeatureScorer.for_intent(source)
        self.intent_boost = intent_boost_for(source)

    def close(self) -> None:
        """Release the index and its temporary file."""
        self.index.close()
        if self._workdir is not None:
            self._workdir.cleanup()

    # -- parts ----------------------------------------------------------------------------
    def embed(self, texts: Sequence[str], max_length: int) -> np.ndarray:
        """Unit embeddings with the text encoder."""
        out = [
            self.encoder.run(*self.tokenizer.encode(texts[i : i + EMBED_BATCH], max_length))
            for i in range(0, len(texts), EMBED_BATCH)
        ]
        return np.concatenate(out) if out else np.zeros((0, self.encoder.dimension), np.float32)

    def _catalog_vectors(self) -> np.ndarray:
        model = Path(self.text_encoder) / "model.onnx"
        engine = f"{self.encoder.engine}-{self.encoder.precision}".encode()
        digest = hashlib.sha256(model.read_bytes() + engine).hexdigest()[:16]
        texts = [p.embedding_text() for p in self.products]
        catalog = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
        cache = Path(self.cache_dir or state_dir() / "offline-eval") / f"{digest}-{catalog}.npy"
        if cache.is_file():
            return np.load(cache)
        if self.progress:
            self.progress(f"embedding {len(texts)} products for the offline evaluation")
        vectors = self.embed(texts, PRODUCT_TOKENS)
        cache.parent.mkdir(parents=True, exist_ok=True)
        staged = cache.with_suffix(".tmp.npy")
        np.save(staged, vectors)
        staged.replace(cache)
        return vectors

    def classify(self, query: str, vector: np.ndarray, top_k: int = 5) -> list[tuple[str, float]]:
        """Top classes with probabilities: the classifier, else the prototypes."""
        if self.classifier is None or self.labels is None:
            return self.prototypes.classify(vector, top_k)
        ids, mask = self.tokenizer.encode([query], QUERY_TOKENS)
        probabilities = self.classifier.run(ids, mask)[0]
        top = np.argsort(-probabilities)[:top_k]
        return [(self.labels[i], float(probabilities[i])) for i in top]

    def cross_scores(self, query: str, docs: Sequence[str]) -> np.ndarray:
        """Cross-encoder logits of (query, product text) pairs."""
        assert self.reranker is not None
        ids, mask, types = self.tokenizer.encode_pairs([query] * len(docs), docs, PAIR_TOKENS)
        return self.reranker.run(ids, mask, types).reshape(-1)

    # -- one query ------------------------------------------------------------------------
    def rank(
        self,
        query: str,
        timings: dict[str, float] | None = None,
        vector: np.ndarray | None = None,
    ) -> dict[str, list[str]]:
        """The served path of one query: embed (unless ``vector`` is given), classify,
        hybrid retrieval, features and the cross-encoder's rerank. Returns the predicted
        classes, the retrieval order and the final order; ``timings`` (if given) gets each
        step's milliseconds."""
        clock = [time.perf_counter()]

        def lap(step: str) -> None:
            clock.append(time.perf_counter())
            if timings is not None:
                timings[step] = (clock[-1] - clock[-2]) * 1e3

        if vector is None:
            vector = self.embed([query], QUERY_TOKENS)[0]
        lap("embed")
        intent = self.classify(query, vector)
        lap("intent")
        hybrid = self.index.retrieve(
            query,
            vector,
            RetrieveOptions(intent=intent, k=CANDIDATES, intent_boost=self.intent_boost),
        )
        lap("retrieval")
        wanted = self.attributes.match(query)
        scored = self.scorer.score(
            [
                RankInput(
                    c.product.product_id, c.product.product_class, c.score, c.dense_score,
                    c.lexical_score, c.product.rating, c.product.review_count,
                    c.product.attributes,
                )
                for c in hybrid.candidates
            ],
            dict(intent),
            wanted,
        )  # fmt: skip
        if self.reranker is not None and scored:
            texts = {c.product.product_id: c.product.embedding_text() for c in hybrid.candidates}
            head = [texts[s.product_id] for s in scored[: self.rerank_depth]]
            scored = rerank_head(scored, self.cross_scores(query, head), self.rerank_weight)
        lap("ranking")
        if timings is not None:
            timings["total"] = (clock[-1] - clock[0]) * 1e3
        return {
            "classes": [c for c, _ in intent],
            "retrieval": [c.product.product_id for c in hybrid.candidates],
            "pipeline": [s.product_id for s in scored],
        }

    def search(self, query: str) -> dict[str, list[str]]:
        """Ranked product ids of one query at every stage, plus its predicted classes:
        :meth:`rank`'s, BM25 alone and dense alone, and the zero-shot prototypes' classes."""
        vector = self.embed([query], QUERY_TOKENS)[0]
        ranked = self.rank(query, vector=vector)
        dense = self.index.retrieve(query, vector, RetrieveOptions(k=CANDIDATES, mode="dense"))
        lexical = self.index.retrieve(query, None, RetrieveOptions(k=CANDIDATES, mode="lexical"))
        return {
            **ranked,
            "zero_shot": [c for c, _ in self.prototypes.classify(vector, 5)],
            "bm25": [c.product.product_id for c in lexical.candidates],
            "dense": [c.product.product_id for c in dense.candidates],
        }


def evaluate_pipeline(
    pipeline: LocalPipeline,
    queries: Sequence[Query],
    labels: Mapping[str, Mapping[str, str]],
    condensed: bool = False,
) -> dict[str, float]:
    """The module docstring's metrics of ``pipeline`` on ``queries``.

    ``condensed``: score each ranking with its unjudged products left out (Sakai, SIGIR
    2007). Judgments from feedback exist only for what the serving version showed; scored
    as they are, any other ranking would lose for showing something new, whatever it is."""
    runs: dict[str, dict[str, list[str]]] = {}
    for query in queries:
        judged = labels.get(query.query_id, {})
        for stage, ranked in pipeline.search(query.text).items():
            if condensed and stage not in CLASS_STAGES:
                ranked = [pid for pid in ranked if pid in judged]
            runs.setdefault(stage, {})[query.query_id] = ranked
    judged = {q.query_id: labels[q.query_id] for q in queries if labels.get(q.query_id)}
    metrics: dict[str, float] = {}
    for stage in ("bm25", "dense", "retrieval", "pipeline"):
        result = evaluate_run(runs.get(stage, {}), judged)
        for key in ("ndcg@10", "recall@100", "mrr@10"):
            metrics[f"{stage}/{key}"] = float(result[key])
    classes = {q.query_id: q.query_class for q in queries}
    for stage, prefix in CLASS_STAGES.items():
        accuracy = intent_accuracy(runs.get(stage, {}), classes)
        metrics[f"{prefix}/top1"] = float(accuracy["top1"])
        metrics[f"{prefix}/top3"] = float(accuracy["top3"])
    metrics["dev_queries"] = float(len(queries))
    return metrics


def evaluate_version(
    kind: str,
    export_dir: Path,
    dataset_dir: Path,
    serving_exports: Mapping[str, Path],
    progress: Callable[[str], None] | None = None,
) -> dict[str, float]:
    """Metrics of the pipeline with ``export_dir`` as ``kind`` and ``serving_exports`` (kind
    -> exported version folder) in the other slots; ``text_encoder`` must be one of them
    unless ``kind`` is the text encoder. Dev queries come from the dataset's split."""
    from shared.training.data import load_training_data

    data = load_training_data(Path(dataset_dir))
    slots = {k: Path(v) for k, v in serving_exports.items()}
    slots[kind] = Path(export_dir)
    if "text_encoder" not in slots:
        raise ValueError("serving_exports: a text_encoder version is needed for the pipeline")
    pipeline = LocalPipeline(
        data.products,
        slots["text_encoder"],
        slots.get("intent_classifier"),
        slots.get("cross_encoder"),
        progress=progress,
    )
    try:
        # Judgments from feedback (a gain column) cover only what was shown: condensed lists.
        return evaluate_pipeline(pipeline, data.dev_queries, data.labels, bool(data.gains))
    finally:
        pipeline.close()
