"""Which engine and precision an exported version serves on, measured on this machine.

Every engine and precision this machine offers (onnxruntime fp32 and int8, OpenVINO fp32
and bf16: :func:`~shared.models.onnx_runtime.available_engines`) runs the store's check
set; the fastest whose agreement with onnxruntime fp32 meets the kind's bar is served
(onnxruntime fp32 always may). The choice, with every candidate's agreement and time, is
written to the version's ``export_report.json``.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from shared.models.kinds import CROSS_ENCODER, INTENT_CLASSIFIER, TEXT_ENCODER
from shared.models.layout import REPORT_FILE
from shared.models.onnx_runtime import ONNXRUNTIME, OnnxModel, available_engines

# The agreement with fp32 that a faster engine or precision must reach to be served,
# per kind: its metric and bar.
AGREEMENT_BARS: dict[str, tuple[str, float]] = {
    CROSS_ENCODER: ("spearman_vs_fp32", 0.97),
    TEXT_ENCODER: ("cosine_mean_vs_fp32", 0.99),
    INTENT_CLASSIFIER: ("top1_agreement_vs_fp32", 0.98),
}
# The built-in check set: queries of a small synthetic store, each with this many
# candidate product texts (its judged products first).
CHECK_QUERIES, CHECK_CANDIDATES = 32, 20
CHECK_BATCH = 64

CheckInputs = Sequence[tuple[str, Sequence[str]]]


@dataclass(frozen=True)
class Candidate:
    """One engine and precision tried on the check set: its agreement with fp32, its
    time over the whole check set on this machine, and whether it met the bar."""

    engine: str
    precision: str
    agreement: dict[str, float]
    check_ms: float
    admitted: bool
    note: str = ""

    @property
    def name(self) -> str:
        return f"{self.engine} {self.precision}" + (f" ({self.note})" if self.note else "")


@dataclass(frozen=True)
class ExportReport:
    """What ``export_checkpoint`` wrote and measured (also saved as export_report.json).

    ``engine`` and ``served`` (the precision: "fp32", "int8" or "bf16") are what the
    version runs on; ``reason`` says why. ``agreement`` holds the served candidate's
    metrics (vs fp32 and vs PyTorch), ``candidates`` every candidate tried, ``bar`` the
    deciding metric and value.
    """

    kind: str
    out_dir: Path
    engine: str
    served: str
    reason: str
    fp32_max_abs_diff: float
    served_max_abs_diff: float
    agreement: dict[str, float]
    bar: dict[str, float]
    check_queries: int
    check_rows: int
    candidates: list[dict] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> str:
        """The report as indented JSON (paths as strings)."""
        return json.dumps({**asdict(self), "out_dir": str(self.out_dir)}, indent=2)


def default_check_inputs(
    n_queries: int = CHECK_QUERIES, n_candidates: int = CHECK_CANDIDATES
) -> list[tuple[str, list[str]]]:
    """Realistic check inputs: shopper queries of a small synthetic store, each with
    product texts (its judged products first, then others of the catalog)."""
    from shared.data.synthetic import generate_store

    store = generate_store(n_products=600, n_queries=n_queries, seed=7)
    texts = {p.product_id: p.embedding_text() for p in store.products}
    judged: dict[str, list[str]] = {}
    for label in store.labels:
        judged.setdefault(label.query_id, []).append(label.product_id)
    catalog = list(texts)
    inputs = []
    for number, query in enumerate(store.queries):
        ids = list(dict.fromkeys(judged.get(query.query_id, [])))[:n_candidates]
        others = (catalog[(number * 37 + i) % len(catalog)] for i in range(len(catalog)))
        ids += [pid for pid in others if pid not in ids][: n_candidates - len(ids)]
        inputs.append((query.text, [texts[pid] for pid in ids]))
    return inputs


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two score vectors (1.0 when either is constant)."""
    if len(a) < 2:
        return 1.0
    rank_a = np.argsort(np.argsort(a, kind="stable"), kind="stable").astype(np.float64)
    rank_b = np.argsort(np.argsort(b, kind="stable"), kind="stable").astype(np.float64)
    rank_a -= rank_a.mean()
    rank_b -= rank_b.mean()
    denominator = float(np.sqrt((rank_a**2).sum() * (rank_b**2).sum()))
    return float((rank_a * rank_b).sum() / denominator) if denominator else 1.0


def check_batches(
    kind: str, spec, check_inputs: CheckInputs
) -> tuple[list[tuple[np.ndarray, ...]], list[int]]:
    """Token batches for ``kind`` and, for the cross-encoder, each query's pair count."""
    from shared.models.tokenization import Tokenizer

    tokenizer = Tokenizer()
    queries = [query for query, _ in check_inputs]
    if kind == CROSS_ENCODER:
        pairs = [(q, doc) for q, docs in check_inputs for doc in docs]
        sizes = [len(docs) for _, docs in check_inputs]
        batches = [
            tokenizer.encode_pairs(
                [q for q, _ in pairs[i : i + CHECK_BATCH]],
                [d for _, d in pairs[i : i + CHECK_BATCH]],
                spec.doc_max_length,
            )
            for i in range(0, len(pairs), CHECK_BATCH)
        ]
        return batches, sizes
    batches = [
        tokenizer.encode(queries[i : i + CHECK_BATCH], spec.max_length)
        for i in range(0, len(queries), CHECK_BATCH)
    ]
    if kind == TEXT_ENCODER:
        docs = list(dict.fromkeys(doc for _, candidates in check_inputs for doc in candidates))
        batches += [
            tokenizer.encode(docs[i : i + CHECK_BATCH], spec.doc_max_length)
            for i in range(0, len(docs), CHECK_BATCH)
        ]
    return batches, []


def _agreement(
    kind: str, output: np.ndarray, fp32: np.ndarray, torch_out: np.ndarray, sizes: list[int]
) -> dict[str, float]:
    """The kind's agreement metrics of a candidate's ``output`` with fp32 onnxruntime
    (and with PyTorch)."""
    if kind == CROSS_ENCODER:
        bounds = np.cumsum([0, *sizes])
        vs_fp32 = [spearman(output[a:b, 0], fp32[a:b, 0]) for a, b in itertools.pairwise(bounds)]
        vs_torch = [
            spearman(output[a:b, 0], torch_out[a:b, 0]) for a, b in itertools.pairwise(bounds)
        ]
        return {
            "spearman_vs_fp32": float(np.mean(vs_fp32)),
            "spearman_min_vs_fp32": float(np.min(vs_fp32)),
            "spearman_vs_torch": float(np.mean(vs_torch)),
        }
    if kind == TEXT_ENCODER:
        cosine = (output * fp32).sum(axis=1) / (
            np.linalg.norm(output, axis=1) * np.linalg.norm(fp32, axis=1)
        )
        return {
            "cosine_mean_vs_fp32": float(cosine.mean()),
            "cosine_min_vs_fp32": float(cosine.min()),
        }
    top1 = output.argmax(axis=1) == fp32.argmax(axis=1)
    return {
        "top1_agreement_vs_fp32": float(top1.mean()),
        "top1_agreement_vs_torch": float(
            (output.argmax(axis=1) == torch_out.argmax(axis=1)).mean()
        ),
        "max_prob_diff_vs_fp32": float(np.abs(output - fp32).max()),
    }


# The int8 variants tried, fastest first: how many of the first transformer layers keep
# their feed-forward MatMuls in fp32. On a fine-tuned cross-encoder the early layers' FFN
# activations carry the outliers that per-tensor activation scales round away (Spearman
# with fp32 0.92 all-int8, 0.974 with layers 0-1 in fp32, 0.988 with 0-2, at 8% and 20%
# of int8's speed-up respectively); the first variant that meets the bar is served.
INT8_FP32_FFN_LAYERS = (0, 2, 3, 4)
_LAYER = re.compile(r"layer\.(\d+)/")


def _ffn_matmuls(fp32_path: Path, first_layers: int) -> list[str]:
    """Names of the feed-forward MatMuls (intermediate and output dense) of the first
    ``first_layers`` transformer layers."""
    import onnx

    names = []
    for node in onnx.load(str(fp32_path), load_external_data=False).graph.node:
        found = _LAYER.search(node.name)
        if node.op_type != "MatMul" or found is None or int(found.group(1)) >= first_layers:
            continue
        if "/intermediate/dense/" in node.name or (
            "/output/dense/" in node.name and "/attention/" not in node.name
        ):
            names.append(node.name)
    return names


def _quantize(fp32_path: Path, int8_path: Path, fp32_ffn_layers: int = 0) -> None:
    """Dynamic int8 with per-channel weights, on the weight MatMuls only.

    Per-tensor weights shifted rankings (PERFORMANCE.md). Left in fp32: the attention
    score MatMuls (both operands are activations), the embedding Gathers (lookups, no
    speed to gain), the head (a Gemm: the last layer decides the ranking) and the
    feed-forward MatMuls of the first ``fp32_ffn_layers`` layers.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        fp32_path,
        int8_path,
        op_types_to_quantize=["MatMul"],
        per_channel=True,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=_ffn_matmuls(fp32_path, fp32_ffn_layers) if fp32_ffn_layers else [],
        extra_options={"MatMulConstBOnly": True},
    )


def _try(
    kind: str,
    path: Path,
    engine: str,
    precision: str,
    batches: list[tuple[np.ndarray, ...]],
    reference: tuple[np.ndarray | None, np.ndarray, list[int]],
    note: str = "",
) -> tuple[Candidate, np.ndarray]:
    """Run the check set on one engine and precision: agreement with fp32, and the time
    of the whole set after one warm-up batch. A reference of None for fp32 makes this
    run the fp32 reference itself (onnxruntime fp32)."""
    fp32, torch_out, sizes = reference
    model = OnnxModel(path, engine=engine, precision=precision)
    model.run(*batches[0])
    mark = time.perf_counter()
    output = np.concatenate([model.run(*batch) for batch in batches])
    check_ms = (time.perf_counter() - mark) * 1000.0
    agreement = _agreement(kind, output, output if fp32 is None else fp32, torch_out, sizes)
    metric, bar = AGREEMENT_BARS[kind]
    admitted = (engine == ONNXRUNTIME and precision == "fp32") or agreement[metric] >= bar
    candidate = Candidate(engine, precision, agreement, round(check_ms, 1), admitted, note)
    return candidate, output


def reference_run(
    kind: str,
    fp32_path: Path,
    batches: list[tuple[np.ndarray, ...]],
    torch_out: np.ndarray,
    sizes: list[int],
) -> tuple[Candidate, np.ndarray]:
    """The onnxruntime fp32 run of the check set: the reference every other candidate is
    compared with, and itself the first candidate."""
    return _try(kind, fp32_path, ONNXRUNTIME, "fp32", batches, (None, torch_out, sizes))


def measure_candidates(
    kind: str,
    fp32_path: Path,
    batches: list[tuple[np.ndarray, ...]],
    reference: tuple[Candidate, np.ndarray],
    torch_out: np.ndarray,
    sizes: list[int],
    int8_path: Path | None,
    seconds: dict[str, float],
) -> list[tuple[Candidate, np.ndarray]]:
    """``reference`` (the onnxruntime fp32 run, :func:`reference_run`), then every other
    engine of this machine on the fp32 graph, then (with ``int8_path``) the int8 ladder on
    onnxruntime until a variant meets the bar; each with its output."""
    mark = time.perf_counter()
    fp32 = (reference[1], torch_out, sizes)
    tried = [reference] + [
        _try(kind, fp32_path, engine, precision, batches, fp32)
        for engine, precision in available_engines()
        if (engine, precision) != (ONNXRUNTIME, "fp32")
    ]
    seconds["engines"] = time.perf_counter() - mark
    if int8_path is None:
        return tried
    for fp32_layers in INT8_FP32_FFN_LAYERS:
        mark = time.perf_counter()
        _quantize(fp32_path, int8_path, fp32_layers)
        seconds["quantize"] = seconds.get("quantize", 0.0) + time.perf_counter() - mark
        note = f"{fp32_layers} fp32 FFN layers" if fp32_layers else "all layers"
        tried.append(_try(kind, int8_path, ONNXRUNTIME, "int8", batches, fp32, note))
        if tried[-1][0].admitted:
            break
    return tried


def _choose(
    kind: str, tried: list[tuple[Candidate, np.ndarray]]
) -> tuple[Candidate, np.ndarray, str]:
    """The fastest admitted candidate, its output and the reason, in words."""
    metric, bar = AGREEMENT_BARS[kind]
    chosen, output = min(((c, o) for c, o in tried if c.admitted), key=lambda p: p[0].check_ms)
    fp32_ms = tried[0][0].check_ms
    reason = (
        f"fastest of {len(tried)} tried with {metric} >= {bar}: {chosen.name} "
        f"{chosen.check_ms:.0f} ms on the check set, {fp32_ms / chosen.check_ms:.2f}x "
        f"onnxruntime fp32; {metric} {chosen.agreement.get(metric, 1.0):.4f}"
    )
    return chosen, output, reason


def write_report(
    kind: str,
    out_dir: Path,
    tried: list[tuple[Candidate, np.ndarray]],
    fp32: np.ndarray,
    torch_out: np.ndarray,
    check_queries: int,
    seconds: dict[str, float],
    started: float,
) -> ExportReport:
    """Choose among ``tried`` and write ``export_report.json`` into ``out_dir``."""
    chosen, output, reason = _choose(kind, tried)
    metric, bar = AGREEMENT_BARS[kind]
    seconds["total"] = time.perf_counter() - started
    report = ExportReport(
        kind=kind,
        out_dir=out_dir,
        engine=chosen.engine,
        served=chosen.precision,
        reason=reason,
        fp32_max_abs_diff=float(np.abs(fp32 - torch_out).max()),
        served_max_abs_diff=float(np.abs(output - torch_out).max()),
        agreement=chosen.agreement,
        bar={metric: bar},
        check_queries=check_queries,
        check_rows=int(fp32.shape[0]),
        candidates=[asdict(candidate) for candidate, _ in tried],
        seconds={k: round(v, 2) for k, v in seconds.items()},
    )
    (out_dir / REPORT_FILE).write_text(report.to_json(), encoding="utf-8")
    return report
