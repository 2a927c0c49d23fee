"""The exported models at inference: one runner used both inside Triton's python backend
and in-process (tests, benchmarks, export checks), so it must not import Triton.

Every exported graph takes int64 ``input_ids`` and ``attention_mask`` ``[B, T]`` (the
cross-encoder also ``token_type_ids``) and has one output, named after its kind:
``embedding`` ``[B, 384]`` (text_encoder, L2-normalised), ``probabilities`` ``[B, C]``
(intent_classifier, softmax applied) or ``score`` ``[B, 1]`` (cross_encoder, a logit).

Two engines run them on CPU: onnxruntime (fp32, or the int8 graph that
:mod:`shared.training.export` writes) and OpenVINO (the fp32 graph, computed in fp32 or in
bfloat16 where the CPU has bf16 instructions). The export measures which is fastest on
the machine while agreeing with fp32, and writes its choice into the version's
``export_report.json`` (:func:`served_engine`); :meth:`OnnxModel.for_version` follows it.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np
import onnxruntime as ort

from shared.models.kinds import CROSS_ENCODER, INTENT_CLASSIFIER, TEXT_ENCODER
from shared.models.layout import REPORT_FILE

OUTPUT_NAMES = {
    TEXT_ENCODER: "embedding",
    INTENT_CLASSIFIER: "probabilities",
    CROSS_ENCODER: "score",
}
ONNXRUNTIME, OPENVINO = "onnxruntime", "openvino"
ENGINES = (ONNXRUNTIME, OPENVINO)
# Precisions per engine: onnxruntime runs whatever graph it is given (fp32 or int8);
# OpenVINO runs the fp32 graph and computes in fp32 or bf16.
PRECISIONS = {ONNXRUNTIME: ("fp32", "int8"), OPENVINO: ("fp32", "bf16")}
# Rows per run when a batch is split by length (see OnnxModel.run).
BUCKET_ROWS = 32

log = logging.getLogger(__name__)


def session_options(intra_op_threads: int = 2) -> ort.SessionOptions:
    """Options with a deliberate thread budget.

    Spinning intra-op threads fought the other threads of the process over 2 cores and
    doubled the latency of a full search (PERFORMANCE.md), so spinning is off, there is
    one inter-op thread and the graph runs sequentially.
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, int(intra_op_threads))
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options


@cache
def _openvino_core():  # -> openvino.Core | None
    try:
        import openvino
    except ImportError:
        return None
    return openvino.Core()


def available_engines() -> list[tuple[str, str]]:
    """``(engine, precision)`` pairs this machine can run an fp32 graph with.

    onnxruntime fp32 always; OpenVINO fp32 when it is installed; OpenVINO bf16 when the
    CPU also has bf16 instructions (AVX512-BF16 or AMX; without them OpenVINO would
    silently compute in fp32).
    """
    engines = [(ONNXRUNTIME, "fp32")]
    core = _openvino_core()
    if core is not None:
        engines.append((OPENVINO, "fp32"))
        if "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
            engines.append((OPENVINO, "bf16"))
    return engines


def served_engine(version_dir: Path | str) -> tuple[str, str]:
    """The ``(engine, precision)`` a version's export chose (its export_report.json).

    A folder without a report (one installed by hand) or an older report without an
    engine runs on onnxruntime; the precision then is whatever model.onnx holds.
    """
    path = Path(version_dir) / REPORT_FILE
    if not path.is_file():
        return ONNXRUNTIME, "fp32"
    report = json.loads(path.read_text(encoding="utf-8"))
    engine = str(report.get("engine", ONNXRUNTIME))
    precision = str(report.get("served", "fp32"))
    if engine not in ENGINES or precision not in PRECISIONS[engine]:
        raise ValueError(f"{path}: unknown engine {engine!r} with precision {precision!r}")
    return engine, precision


def kind_of_output(output_name: str) -> str:
    """The model kind whose graph ends in ``output_name``."""
    for kind, name in OUTPUT_NAMES.items():
        if name == output_name:
            return kind
    raise ValueError(f"output_name: {output_name!r} is none of {sorted(OUTPUT_NAMES.values())}")


def _onnxruntime_runner(
    path: Path, threads: int
) -> tuple[Callable[[dict[str, np.ndarray]], np.ndarray], tuple[str, ...], str, object]:
    session = ort.InferenceSession(
        str(path), sess_options=session_options(threads), providers=["CPUExecutionProvider"]
    )
    output = session.get_outputs()[0]
    width = output.shape[-1] if len(output.shape) > 1 else 1

    def run(feeds: dict[str, np.ndarray]) -> np.ndarray:
        return session.run([output.name], feeds)[0]

    return run, tuple(i.name for i in session.get_inputs()), output.name, width


def _openvino_runner(
    path: Path, threads: int, precision: str
) -> tuple[Callable[[dict[str, np.ndarray]], np.ndarray], tuple[str, ...], str, object]:
    core = _openvino_core()
    if core is None:
        raise RuntimeError("engine: openvino is not installed")
    compiled = core.compile_model(
        str(path),
        "CPU",
        {
            "INFERENCE_NUM_THREADS": max(1, int(threads)),
            "NUM_STREAMS": 1,
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
            # Pinned threads would fight the other processes over 2 cores.
            "ENABLE_CPU_PINNING": False,
        },
    )
    request = compiled.create_infer_request()
    lock = threading.Lock()  # an infer request runs one inference at a time
    output = compiled.outputs[0]
    shape = output.get_partial_shape()
    last = shape[shape.rank.get_length() - 1] if shape.rank.get_length() > 1 else None
    width = last.get_length() if last is not None and last.is_static else (1 if last is None else 0)

    def run(feeds: dict[str, np.ndarray]) -> np.ndarray:
        with lock:
            result = request.infer(feeds)
            return np.array(result[output], dtype=np.float32, copy=True)

    # A port may carry several tensor names; the graph's own are the ones wanted.
    known = {"input_ids", "attention_mask", "token_type_ids", *OUTPUT_NAMES.values()}

    def name(port) -> str:
        return next((n for n in sorted(port.get_names()) if n in known), port.get_any_name())

    return run, tuple(name(i) for i in compiled.inputs), name(output), width


class OnnxModel:
    """Runs an exported ``model.onnx`` of any kind; the kind is read from its output name.

    ``engine`` and ``precision`` pick the runtime (see :func:`available_engines`); a
    batch of more than ``bucket_rows`` rows is sorted by length and run in slices of
    that many, each cut to its longest row, so short rows do not pay for the padding of
    long ones (exact: trailing positions are padding with attention_mask 0).
    """

    def __init__(
        self,
        path: Path | str,
        intra_op_threads: int = 2,
        engine: str = ONNXRUNTIME,
        precision: str = "fp32",
        bucket_rows: int = BUCKET_ROWS,
    ) -> None:
        if engine not in ENGINES:
            raise ValueError(f"engine: {engine!r} is none of {ENGINES}")
        if precision not in PRECISIONS[engine]:
            raise ValueError(f"precision: {engine} runs {PRECISIONS[engine]}, not {precision!r}")
        self.path = Path(path)
        self.engine, self.precision = engine, precision
        self.bucket_rows = max(1, int(bucket_rows))
        if engine == OPENVINO:
            runner = _openvino_runner(self.path, intra_op_threads, precision)
        else:
            runner = _onnxruntime_runner(self.path, intra_op_threads)
        self._run, self.input_names, self.output_name, width = runner
        self.kind: str = kind_of_output(self.output_name)
        # Width of the output row: 384 (embedding), C (classes) or 1 (score).
        self.width: int = int(width) if isinstance(width, int) else 0
        self._validate()

    def _validate(self) -> None:
        """A subclass's check of the loaded graph (any kind is fine here)."""

    @classmethod
    def for_version(cls, version_dir: Path | str, intra_op_threads: int = 2) -> OnnxModel:
        """The version folder's ``model.onnx`` on the engine its export chose.

        Where that engine cannot run here (OpenVINO not installed, or a CPU without bf16
        for a bf16 choice), it runs on onnxruntime in fp32 instead: slower, same results.
        """
        version_dir = Path(version_dir)
        engine, precision = served_engine(version_dir)
        if engine == OPENVINO and (engine, precision) not in available_engines():
            log.warning(
                "%s: its export chose %s %s, which this machine cannot run; using onnxruntime fp32",
                version_dir,
                engine,
                precision,
            )
            engine, precision = ONNXRUNTIME, "fp32"
        if engine == ONNXRUNTIME:
            precision = "int8" if precision == "int8" else "fp32"
        return cls(version_dir / "model.onnx", intra_op_threads, engine, precision)

    @property
    def needs_token_type_ids(self) -> bool:
        """Whether the graph takes ``token_type_ids`` (the cross-encoder's pairs)."""
        return "token_type_ids" in self.input_names

    def run(
        self,
        input_ids: np.ndarray,
        attention_mask: np.ndarray,
        token_type_ids: np.ndarray | None = None,
    ) -> np.ndarray:
        """float32 output ``[B, width]`` for int64 ``[B, T]`` token arrays.

        ``token_type_ids`` None means all zeros (segment A) where the graph takes them.
        """
        if input_ids.shape != attention_mask.shape or input_ids.ndim != 2:
            raise ValueError(
                f"input_ids {input_ids.shape} and attention_mask {attention_mask.shape} "
                "must both be [batch, sequence]"
            )
        if token_type_ids is not None and token_type_ids.shape != input_ids.shape:
            raise ValueError(
                f"token_type_ids {token_type_ids.shape} must match input_ids {input_ids.shape}"
            )
        if input_ids.shape[0] == 0:
            return np.zeros((0, self.width), dtype=np.float32)
        arrays = [input_ids, attention_mask]
        if self.needs_token_type_ids:
            arrays.append(np.zeros_like(input_ids) if token_type_ids is None else token_type_ids)
        arrays = [np.ascontiguousarray(a, dtype=np.int64) for a in arrays]
        rows = arrays[0].shape[0]
        if rows <= self.bucket_rows:
            return self._feed(arrays)
        lengths = arrays[1].sum(axis=1)
        order = np.argsort(lengths, kind="stable")
        parts = []
        for start in range(0, rows, self.bucket_rows):
            chosen = order[start : start + self.bucket_rows]
            length = max(1, int(lengths[chosen].max()))
            parts.append(self._feed([a[chosen, :length] for a in arrays]))
        output = np.empty((rows, parts[0].shape[1]), dtype=np.float32)
        output[order] = np.concatenate(parts)
        return output

    def _feed(self, arrays: list[np.ndarray]) -> np.ndarray:
        names = ("input_ids", "attention_mask", "token_type_ids")
        feeds = {name: np.ascontiguousarray(a) for name, a in zip(names, arrays, strict=False)}
        return self._run(feeds)


class OnnxSentenceEncoder(OnnxModel):
    """Runs a text encoder's ``model.onnx`` (-> L2-normalised ``embedding``)."""

    def _validate(self) -> None:
        if self.kind != TEXT_ENCODER:
            raise ValueError(f"path: {self.path} is a {self.kind}, not a {TEXT_ENCODER}")
        self.dimension: int = self.width
