"""Fine-tune one model kind on a WANDS-format folder and save its best checkpoint.

``train_model`` is what the training service and ``make train`` call; the command line
is ``python -m shared.training.train --model KIND --data DIR --out DIR [--set name=value
...] [--teacher DIR] [--init DIR]``. The run writes ``OUT/checkpoint/`` (the best dev
weights, :meth:`ShopsenseModel.save`) and ``OUT/history.json`` (the learning curve and
the final dev metrics). A cancelled run writes neither.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from shared.models.kinds import CROSS_ENCODER, INTENT_CLASSIFIER, MODEL_KINDS
from shared.training.data import load_training_data
from shared.training.hyperparams import DISTILLED_KINDS, Hyperparameters
from shared.training.loop import Device, TrainingCancelled, fit, pick_device, seed_everything
from shared.training.modules import ModelSpec, ShopsenseModel
from shared.training.recipes import CrossEncoderRecipe, EncoderRecipe, IntentRecipe

__all__ = ["Progress", "TrainResult", "TrainingCancelled", "main", "train_model"]


@dataclass
class Progress:
    """A progress report: ``stage`` is "prepare", "train", "evaluate" or "save"."""

    stage: str
    step: int
    total_steps: int
    epoch: int
    metrics: dict[str, float]


@dataclass
class TrainResult:
    """A finished run: where the checkpoint is and how good it is on the dev split."""

    kind: str
    checkpoint_dir: Path
    dev_metrics: dict[str, float]
    # The learning curve: a point every few steps (step, epoch, train_loss, lr), plus the
    # dev metrics at each evaluation (FitResult.history).
    history: list[dict]
    data_fingerprint: str
    hyperparameters: dict
    seconds: float
    train_examples: int
    device: str


def _starting_model(
    kind: str, hp: Hyperparameters, labels: list[str], init_checkpoint: Path | None
) -> ShopsenseModel:
    spec = ModelSpec(
        kind=kind,
        labels=labels if kind == INTENT_CLASSIFIER else [],
        max_length=hp.max_length,
        doc_max_length=hp.doc_max_length,
        dropout=hp.dropout,
    )
    if init_checkpoint is None:
        return ShopsenseModel.pretrained(replace(spec, layers=hp.layers or spec.layers))
    previous = ShopsenseModel.load(Path(init_checkpoint))
    if previous.spec.kind != kind:
        raise ValueError(
            f"init_checkpoint: {init_checkpoint} holds a {previous.spec.kind}, not a {kind}"
        )
    if kind == INTENT_CLASSIFIER and previous.spec.labels != labels:
        raise ValueError(
            f"init_checkpoint: {init_checkpoint} was trained on other classes than the data's"
        )
    if hp.layers > previous.spec.layers:
        raise ValueError(
            f"layers: init_checkpoint {init_checkpoint} has {previous.spec.layers} "
            f"transformer layers, fewer than the {hp.layers} asked for"
        )
    previous = previous.pruned(hp.layers or previous.spec.layers)
    model = ShopsenseModel(
        replace(spec, labels=previous.spec.labels, layers=previous.spec.layers), pretrained=False
    )
    model.load_state_dict(previous.state_dict())
    return model


def train_model(
    kind: str,
    dataset_dir: Path,
    out_dir: Path,
    hyperparameters: Hyperparameters | None = None,
    *,
    init_checkpoint: Path | None = None,
    teacher_checkpoint: Path | None = None,
    progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Fine-tune ``kind`` on ``dataset_dir`` and save the best dev checkpoint to
    ``out_dir/checkpoint`` (plus ``out_dir/history.json``).

    ``init_checkpoint`` continues from an earlier version instead of the base model;
    ``teacher_checkpoint`` (text_encoder and cross_encoder) is a cross-encoder to distil
    from (``distill_weight``).
    ``should_stop`` is polled before every step: when it returns True the run raises
    :class:`TrainingCancelled` and writes nothing.
    """
    started = time.perf_counter()
    if kind not in MODEL_KINDS:
        raise ValueError(f"kind: unknown model kind {kind!r}; one of {MODEL_KINDS}")
    if teacher_checkpoint is not None and kind not in DISTILLED_KINDS:
        raise ValueError(
            f"teacher_checkpoint: only a {' or a '.join(DISTILLED_KINDS)} distils, not a {kind}"
        )
    hp = hyperparameters or Hyperparameters.for_kind(kind)
    notify = progress or (lambda _: None)
    notify(Progress("prepare", 0, 0, 0, {}))
    data = load_training_data(Path(dataset_dir), kind=kind)
    device = pick_device()
    seed_everything(hp.seed)
    model = _starting_model(kind, hp, data.classes, init_checkpoint)
    recipe = _recipe(kind, data, hp, device, teacher_checkpoint)
    if init_checkpoint is None and isinstance(recipe, IntentRecipe):
        recipe.initialise(model.to(device.torch_device))

    def report(stage: str, step: int, total: int, epoch: int, metrics: dict[str, float]) -> None:
        notify(Progress(stage, step, total, epoch, metrics))

    result = fit(model, recipe, hp, device, report=report, should_stop=should_stop)
    if should_stop is not None and should_stop():
        raise TrainingCancelled("stopped before the checkpoint was saved")

    out_dir = Path(out_dir)
    checkpoint = out_dir / "checkpoint"
    notify(Progress("save", result.steps, result.steps, hp.epochs - 1, result.dev_metrics))
    staging = out_dir / ".checkpoint.partial"
    shutil.rmtree(staging, ignore_errors=True)
    model.to("cpu").save(staging)
    shutil.rmtree(checkpoint, ignore_errors=True)
    staging.rename(checkpoint)
    train_result = TrainResult(
        kind=kind,
        checkpoint_dir=checkpoint,
        dev_metrics=result.dev_metrics,
        history=result.history,
        data_fingerprint=data.fingerprint,
        hyperparameters=hp.to_dict(),
        seconds=round(time.perf_counter() - started, 2),
        train_examples=recipe.num_examples(),
        device=device.name,
    )
    record = {**asdict(train_result), "checkpoint_dir": str(checkpoint)}
    record.update(steps=result.steps, stopped_early=result.stopped_early)
    (out_dir / "history.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
    return train_result


def _recipe(
    kind: str,
    data: object,
    hp: Hyperparameters,
    device: Device,
    teacher_checkpoint: Path | None,
) -> IntentRecipe | EncoderRecipe | CrossEncoderRecipe:
    if kind == INTENT_CLASSIFIER:
        return IntentRecipe(data, hp, device)  # type: ignore[arg-type]
    teacher = ShopsenseModel.load(Path(teacher_checkpoint)) if teacher_checkpoint else None
    if kind == CROSS_ENCODER:
        return CrossEncoderRecipe(data, hp, device, teacher)  # type: ignore[arg-type]
    return EncoderRecipe(data, hp, device, teacher)  # type: ignore[arg-type]


def _parse_sets(pairs: list[str]) -> dict[str, str]:
    overrides = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--set: expected name=value, got {pair!r}")
        overrides[name.strip()] = value.strip()
    return overrides


def main(argv: list[str] | None = None) -> None:
    """Command line: train one model and print its dev metrics and time."""
    from tqdm import tqdm

    parser = argparse.ArgumentParser(description="Fine-tune one shopsense model.")
    parser.add_argument("--model", required=True, choices=MODEL_KINDS)
    parser.add_argument("--data", type=Path, required=True, help="WANDS-format folder")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--teacher", type=Path, default=None, help="cross-encoder checkpoint")
    parser.add_argument("--init", type=Path, default=None, help="checkpoint to continue from")
    args = parser.parse_args(argv)
    hp = Hyperparameters.for_kind(args.model, _parse_sets(args.set))
    bar: tqdm | None = None

    def show(p: Progress) -> None:
        nonlocal bar
        if p.stage == "train":
            if bar is None:
                bar = tqdm(total=p.total_steps, desc=args.model, unit="step", file=sys.stderr)
            bar.update(p.step - bar.n)
            bar.set_postfix(loss=f"{p.metrics['train_loss']:.4f}")
        elif p.stage == "evaluate" and p.metrics:
            shown = ", ".join(f"{k}={v:.4f}" for k, v in p.metrics.items())
            (bar.write if bar is not None else print)(f"step {p.step}: {shown}")

    result = train_model(
        args.model,
        args.data,
        args.out,
        hp,
        init_checkpoint=args.init,
        teacher_checkpoint=args.teacher,
        progress=show,
    )
    if bar is not None:
        bar.close()
    metrics = ", ".join(f"{k}={v:.4f}" for k, v in result.dev_metrics.items())
    print(f"{result.kind}: {metrics}")
    print(
        f"{result.train_examples} examples, {result.seconds:.0f} s on {result.device}; "
        f"checkpoint {result.checkpoint_dir}"
    )


if __name__ == "__main__":
    main()
