"""``make bench-recs`` / ``shopsense recs bench``: the fine-tuned ``sequence_recommender``
against SASRec with ID embeddings, offline, on the Amazon Scientific sequences.

Both train on the train file in this run (a model of an earlier run on the same data and
settings is reused: ``--fresh`` retrains) and are scored by a full ranking over every
item (the history's own items excluded, as RecBole does) on valid and, when ``--test``
names a file in the same format, on it. Popularity (training counts) is listed too.
The published figures of the papers (their test split, after pretraining on five other
Amazon domains) are printed beside them for reference.

``python -m shared.bench.sequence --data DIR [--test FILE] [--json OUT] [--work DIR]``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from shared.bench.machine import machine
from shared.data.amazon_scientific import NextItemCase, SequenceDataset, load_sequences, read_cases
from shared.evaluation.sequential import next_item_metrics
from shared.models.kinds import SEQUENCE_RECOMMENDER
from shared.paths import state_dir
from shared.recommendation.events import PURCHASE

# Test split, full ranking (R@10, N@10, R@50, N@50), from the papers' tables.
PUBLISHED = {
    "SASRec (published, test)": (0.1080, 0.0553, 0.2042, 0.0760),
    "UniSRec text-only (published, test)": (0.1188, 0.0641, 0.2394, 0.0903),
    "VQ-Rec (published, test)": (0.1211, 0.0643, 0.2369, 0.0897),
}
# SASRec-ID as the papers train it: small ID embeddings, heavy dropout; it needs more
# epochs than the text model, which starts from the text's neighbourhoods.
SASREC_SETTINGS = {
    "epochs": 12,
    "batch_size": 128,
    "learning_rate": 3e-3,
    "dropout": 0.5,
    "early_stopping_patience": 3,
}
SASREC_DIM = 64
TEXT_MAX_TOKENS = 64


@dataclass
class SystemResult:
    name: str
    split: str
    recall_at_10: float
    ndcg_at_10: float
    recall_at_50: float
    ndcg_at_50: float
    train_seconds: float | None = None


def _text_vectors(dataset: SequenceDataset, cache: Path, console: Console) -> np.ndarray:
    """all-MiniLM-L6-v2 vectors of the item texts (mean pooling, unit length), cached."""
    if cache.is_file():
        vectors = np.load(cache)
        if vectors.shape[0] == dataset.num_items:
            return vectors
    import torch

    from shared.models.kinds import TEXT_ENCODER
    from shared.models.tokenization import Tokenizer
    from shared.training.modules import ModelSpec, ShopsenseModel

    started = time.perf_counter()
    model = ShopsenseModel.pretrained(ModelSpec(kind=TEXT_ENCODER)).eval()
    tokenizer = Tokenizer()
    out = []
    with torch.inference_mode():
        for start in range(0, dataset.num_items, 64):
            ids, mask = tokenizer.encode(dataset.texts[start : start + 64], TEXT_MAX_TOKENS)
            out.append(model(torch.from_numpy(ids), torch.from_numpy(mask)).numpy())
    vectors = np.concatenate(out).astype(np.float32)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, vectors)
    console.print(
        f"encoded {dataset.num_items:,} item texts in {time.perf_counter() - started:.0f} s"
    )
    return vectors


def _corpus(dataset: SequenceDataset, vectors: np.ndarray | None):
    from shared.training.sequence import DevCase, History, SequenceCorpus

    return SequenceCorpus(
        item_keys=list(dataset.item_ids),
        vectors=vectors,
        train=[History.of(seq, PURCHASE) for seq in dataset.train],
        dev=[DevCase(History.of(c.history, PURCHASE), c.target) for c in dataset.valid],
    )


def _dev_cases(cases: list[NextItemCase]):
    from shared.training.sequence import DevCase, History

    return [DevCase(History.of(c.history, PURCHASE), c.target) for c in cases]


def _train_or_reuse(corpus, hp, folder: Path, console: Console, *, id_only: bool, fresh: bool):
    """The checkpoint in ``folder`` if an earlier run finished there, else a new run."""
    from shared.training.sequence import SequenceRecommender, train_sequence_model

    history = folder / "history.json"
    if not fresh and history.is_file() and (folder / "checkpoint").is_dir():
        record = json.loads(history.read_text(encoding="utf-8"))
        model, _ = SequenceRecommender.load(folder / "checkpoint")
        console.print(f"reusing {folder} (trained in {record['seconds']:.0f} s)")
        return model, float(record["seconds"]), record
    name = "SASRec-ID" if id_only else SEQUENCE_RECOMMENDER

    def report(stage, step, total, epoch, metrics) -> None:
        if stage == "evaluate" and metrics:
            shown = ", ".join(f"{k}={v:.4f}" for k, v in metrics.items())
            console.print(f"  {name} step {step}/{total} (epoch {epoch + 1}): {shown}")

    result = train_sequence_model(
        corpus,
        folder,
        hp,
        id_only=id_only,
        dim=SASREC_DIM if id_only else None,
        report=report,
    )
    model, _ = SequenceRecommender.load(result.checkpoint_dir)
    console.print(f"{name}: trained in {result.seconds:.0f} s on {result.device}")
    record = json.loads((folder / "history.json").read_text(encoding="utf-8"))
    return model, result.seconds, record


def _settings_key(hp, extra: str) -> str:
    text = json.dumps(hp.to_dict(), sort_keys=True) + extra
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def _popularity(dataset: SequenceDataset, cases: list[NextItemCase]) -> dict[str, float]:
    counts = np.zeros(dataset.num_items)
    for sequence in dataset.train:
        np.add.at(counts, list(sequence), 1.0)
    # Counts tie often; ties are broken at random (seeded), not in the target's favour.
    counts += np.random.default_rng(0).uniform(0.0, 0.5, size=dataset.num_items)
    ranks = []
    for case in cases:
        scores = counts.copy()
        scores[list(case.history)] = -np.inf
        ranks.append(int((scores > scores[case.target]).sum()))
    return next_item_metrics(np.array(ranks))


def run_bench(
    data: Path,
    test: Path | None,
    work: Path,
    json_out: Path | None,
    console: Console,
    fresh: bool = False,
    overrides: dict[str, str] | None = None,
) -> list[SystemResult]:
    import torch

    from shared.training.hyperparams import Hyperparameters
    from shared.training.sequence import rank_targets

    here = machine()  # torch is imported: its threads are on the line
    console.print(here.line())
    dataset = load_sequences(data)
    splits: dict[str, list[NextItemCase]] = {"valid": list(dataset.valid)}
    if test is not None:
        splits["test"] = read_cases(Path(test), dataset.num_items)
    console.print(
        f"{dataset.num_items:,} items, {len(dataset.train):,} training histories, "
        f"{len(dataset.valid):,} valid cases"
        + (f", {len(splits['test']):,} test cases" if test else "")
    )
    work = Path(work) / dataset.fingerprint
    vectors = _text_vectors(dataset, work / "item-vectors.npy", console)

    hp = Hyperparameters.for_kind(SEQUENCE_RECOMMENDER, overrides or None)
    sasrec_hp = Hyperparameters.for_kind(SEQUENCE_RECOMMENDER, SASREC_SETTINGS)
    trained = []
    for name, corpus, settings, id_only in (
        (SEQUENCE_RECOMMENDER, _corpus(dataset, vectors), hp, False),
        ("SASRec-ID", _corpus(dataset, None), sasrec_hp, True),
    ):
        folder = work / f"{'sasrec-id' if id_only else 'sequence'}-{_settings_key(settings, '')}"
        model, seconds, _ = _train_or_reuse(
            corpus, settings, folder, console, id_only=id_only, fresh=fresh
        )
        trained.append((name, model, corpus, seconds))

    results: list[SystemResult] = []
    for split, cases in splits.items():
        for name, model, corpus, seconds in trained:
            table = torch.from_numpy(corpus.vectors) if corpus.vectors is not None else None
            ranks = rank_targets(model, table, _dev_cases(cases), torch.device("cpu"))
            results.append(_result(name, split, next_item_metrics(ranks), seconds))
        results.append(_result("popularity", split, _popularity(dataset, cases), None))
    _print(results, console)
    if json_out is not None:
        report = {
            "dataset": str(data),
            "fingerprint": dataset.fingerprint,
            "machine": here.as_json(),
            "protocol": "full ranking over every item, the history's items excluded",
            "systems": [asdict(r) for r in results],
            "published": [
                dict(
                    zip(
                        ("name", "recall_at_10", "ndcg_at_10", "recall_at_50", "ndcg_at_50"),
                        (name, *values),
                        strict=True,
                    )
                )
                for name, values in PUBLISHED.items()
            ],
            "hyperparameters": {
                SEQUENCE_RECOMMENDER: hp.to_dict(),
                "SASRec-ID": {**sasrec_hp.to_dict(), "dim": SASREC_DIM},
            },
        }
        Path(json_out).write_text(json.dumps(report, indent=2), encoding="utf-8")
        console.print(f"wrote {json_out}")
    return results


def _result(name: str, split: str, m: dict[str, float], seconds: float | None) -> SystemResult:
    return SystemResult(
        name=name,
        split=split,
        recall_at_10=round(m["recall@10"], 4),
        ndcg_at_10=round(m["ndcg@10"], 4),
        recall_at_50=round(m["recall@50"], 4),
        ndcg_at_50=round(m["ndcg@50"], 4),
        train_seconds=None if seconds is None else round(seconds, 1),
    )


def _print(results: list[SystemResult], console: Console) -> None:
    table = Table(title="Next-item recommendation, Amazon Scientific (full ranking)")
    for column in ("system", "split", "R@10", "N@10", "R@50", "N@50", "training"):
        table.add_column(column, justify="left" if column in ("system", "split") else "right")
    for r in results:
        seconds = "" if r.train_seconds is None else f"{r.train_seconds:.0f} s"
        table.add_row(
            r.name,
            r.split,
            *(f"{v:.4f}" for v in (r.recall_at_10, r.ndcg_at_10, r.recall_at_50, r.ndcg_at_50)),
            seconds,
        )
    for name, values in PUBLISHED.items():
        table.add_row(name, "test", *(f"{v:.4f}" for v in values), "")
    console.print(table)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, type=Path, help="the amazon_scientific folder")
    parser.add_argument("--test", type=Path, help="a test .inter file in the same format")
    parser.add_argument("--json", type=Path, help="write the report as JSON here")
    parser.add_argument(
        "--work",
        type=Path,
        default=None,
        help="where models and item vectors are kept between runs (default <state dir>/bench-recs)",
    )
    parser.add_argument("--fresh", action="store_true", help="retrain even if a model exists")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a sequence_recommender hyperparameter",
    )


def run_from_args(args: argparse.Namespace, console: Console) -> int:
    from shared.data.amazon_scientific import SequenceDataError
    from shared.training.hyperparams import HyperparameterError

    overrides = {}
    for pair in args.set:
        name, sep, value = pair.partition("=")
        if not sep:
            console.print(f"[red]--set[/red]: expected name=value, got {pair!r}")
            return 2
        overrides[name.strip()] = value.strip()
    try:
        run_bench(
            args.data,
            args.test,
            args.work or state_dir() / "bench-recs",
            args.json,
            console,
            fresh=args.fresh,
            overrides=overrides,
        )
    except (SequenceDataError, HyperparameterError) as exc:
        console.print(f"[red]error[/red]: {exc}")
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv), Console(width=140))


if __name__ == "__main__":
    sys.exit(main())
