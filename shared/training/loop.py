"""The one training loop every model kind goes through.

What a kind contributes (its batches, loss and dev metrics) is a :class:`Recipe`
(see :mod:`shared.training.recipes`); the loop owns the rest: AdamW without weight
decay on biases and LayerNorm, linear warmup then linear decay, gradient clipping,
frozen lower layers or LoRA adapters, FGM adversarial steps on the word embeddings,
periodic dev evaluation with early stopping and the best weights restored, CUDA with
mixed precision when a GPU is present, and cancellation between steps.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from shared.training.hyperparams import Hyperparameters
from shared.training.modules import ShopsenseModel

Report = Callable[[str, int, int, int, dict[str, float]], None]
LORA_TARGETS = ("query", "key", "value", "dense")
# Training-loss points of a run's history when ``log_every`` is 0 (automatic).
HISTORY_POINTS = 50


class TrainingCancelled(Exception):
    """``should_stop`` asked the run to stop; no checkpoint was written."""


class Recipe(Protocol):
    """What one model kind brings to the loop."""

    primary_metric: str

    def num_examples(self) -> int:
        """Training examples per epoch."""
        ...

    def num_batches(self) -> int:
        """Batches per epoch."""
        ...

    def batches(self, epoch: int) -> Iterable[Any]:
        """The epoch's batches (shuffled and augmented by a seed derived from ``epoch``)."""
        ...

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        """Scalar training loss of ``batch``."""
        ...

    def evaluate(self, model: nn.Module, final: bool) -> dict[str, float]:
        """Dev metrics; ``final`` asks for the full evaluation, else a cheaper one."""
        ...


@dataclass
class Device:
    """Where training runs and in which precision."""

    torch_device: torch.device
    amp_dtype: torch.dtype | None

    @property
    def name(self) -> str:
        """e.g. ``cpu`` or ``cuda (NVIDIA H200, bf16)``."""
        if self.torch_device.type != "cuda":
            return "cpu"
        precision = str(self.amp_dtype).removeprefix("torch.") if self.amp_dtype else "fp32"
        return f"cuda ({torch.cuda.get_device_name(self.torch_device)}, {precision})"

    def autocast(self) -> AbstractContextManager:
        """Mixed precision on CUDA, nothing on CPU."""
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(device_type="cuda", dtype=self.amp_dtype)


def pick_device() -> Device:
    """CUDA with bf16 (fp16 where bf16 is unsupported) when a GPU is present, else CPU
    with one torch thread per core."""
    if torch.cuda.is_available():
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return Device(torch.device("cuda"), dtype)
    torch.set_num_threads(os.cpu_count() or 1)
    return Device(torch.device("cpu"), None)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class FitResult:
    """What the loop returns: the best dev metrics, the curve and how far it went.

    ``history``: one point every ``log_every`` steps and at every evaluation, each with
    ``step``, ``epoch``, ``train_loss`` (the mean over the steps since the previous point)
    and ``lr``; an evaluation's point also has its dev metrics and ``eval_seconds``.
    """

    dev_metrics: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)
    steps: int = 0
    stopped_early: bool = False


def freeze_lower_layers(model: ShopsenseModel, n_layers: int) -> None:
    """Freeze the embeddings and the lower ``n_layers`` transformer layers (0: none)."""
    if n_layers <= 0:
        return
    for param in model.bert.embeddings.parameters():
        param.requires_grad_(False)
    for layer in model.bert.encoder.layer[:n_layers]:
        for param in layer.parameters():
            param.requires_grad_(False)


def add_lora(model: ShopsenseModel, hp: Hyperparameters) -> None:
    """Wrap the transformer with LoRA adapters on its attention and dense projections;
    the head stays fully trainable."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=hp.lora_r,
        lora_alpha=hp.lora_alpha,
        lora_dropout=hp.lora_dropout,
        target_modules=list(LORA_TARGETS),
        bias="none",
    )
    model.bert = get_peft_model(model.bert, config)


def merge_lora(model: nn.Module) -> None:
    """Fold the LoRA adapters into the base weights (a plain BERT again), if any."""
    if hasattr(getattr(model, "bert", None), "merge_and_unload"):
        model.bert = model.bert.merge_and_unload()


class _FGM:
    """Fast Gradient Method: a second loss on word embeddings moved by
    ``epsilon * grad / ||grad||``, whose gradient is added to the clean one."""

    def __init__(self, embedding: nn.Embedding, epsilon: float) -> None:
        self.weight = embedding.weight
        self.epsilon = epsilon
        self.weight.requires_grad_(True)

    def attack(self) -> torch.Tensor | None:
        grad = self.weight.grad
        if grad is None:
            return None
        norm = torch.linalg.vector_norm(grad)
        if not torch.isfinite(norm) or norm == 0:
            return None
        delta = self.epsilon * grad / norm
        self.weight.data.add_(delta)
        return delta

    def restore(self, delta: torch.Tensor) -> None:
        self.weight.data.sub_(delta)


def _param_groups(model: nn.Module, weight_decay: float, exclude: set[int]) -> list[dict]:
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad or id(param) in exclude:
            continue
        lowered = name.lower()
        if param.ndim < 2 or "bias" in lowered or "layernorm" in lowered or "layer_norm" in lowered:
            no_decay.append(param)
        else:
            decay.append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def linear_schedule(step: int, total: int, warmup: int) -> float:
    """Learning-rate multiplier: linear warmup to 1 over ``warmup`` steps, then linear
    decay to 0 at ``total``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def fit(
    model: nn.Module,
    recipe: Recipe,
    hp: Hyperparameters,
    device: Device,
    report: Report | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> FitResult:
    """Train ``model`` in place with ``recipe``; on return it holds the best dev weights
    (LoRA merged) and ``FitResult.dev_metrics`` are their final full evaluation."""
    report = report or (lambda *_: None)
    per_epoch = recipe.num_batches()
    if per_epoch == 0:
        raise ValueError("batch_size: no training batch could be made from the data")
    total = per_epoch * hp.epochs
    if hp.max_steps:
        total = min(total, hp.max_steps)
    warmup = int(hp.warmup_ratio * total)
    eval_every = hp.eval_every or per_epoch
    log_every = hp.log_every or max(1, total // HISTORY_POINTS)

    # A model without a transformer of its own (the sequence recommender reads vectors)
    # has nothing to freeze, adapt with LoRA or attack with FGM: its recipe refuses those.
    has_bert = hasattr(model, "bert")
    fgm, exclude = None, set()
    if has_bert:
        word_embeddings = model.bert.embeddings.word_embeddings
        if hp.lora:
            add_lora(model, hp)
        else:
            freeze_lower_layers(model, hp.freeze_layers)
        embedding_frozen = not word_embeddings.weight.requires_grad
        fgm = _FGM(word_embeddings, hp.fgm_epsilon) if hp.fgm_epsilon > 0 else None
        exclude = {id(word_embeddings.weight)} if fgm and embedding_frozen else set()
    model.to(device.torch_device)
    optimizer = torch.optim.AdamW(
        _param_groups(model, hp.weight_decay, exclude), lr=hp.learning_rate, foreach=True
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: linear_schedule(s, total, warmup)
    )
    scaler = torch.amp.GradScaler("cuda", enabled=device.amp_dtype == torch.float16)
    trainable = [p for group in optimizer.param_groups for p in group["params"]]

    history: list[dict[str, float]] = []
    best: tuple[float, dict[str, torch.Tensor], dict[str, float]] | None = None
    bad_evals = 0
    step = 0
    stopped_early = False
    running: list[float] = []
    for epoch in range(hp.epochs):
        for batch in recipe.batches(epoch):
            if step >= total:
                break
            if should_stop is not None and should_stop():
                raise TrainingCancelled(f"stopped at step {step} of {total}")
            model.train()
            with device.autocast():
                loss = recipe.loss(model, batch)
            scaler.scale(loss).backward()
            if fgm is not None:
                delta = fgm.attack()
                if delta is not None:
                    with device.autocast():
                        adversarial = recipe.loss(model, batch)
                    scaler.scale(adversarial).backward()
                    fgm.restore(delta)
                if exclude:
                    model.bert.embeddings.word_embeddings.weight.grad = None
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(trainable, hp.max_grad_norm)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            step += 1
            value = float(loss.detach())
            if not math.isfinite(value):
                raise FloatingPointError(f"learning_rate: training loss became {value}")
            running.append(value)
            report("train", step, total, epoch, {"train_loss": value})
            evaluating = step % eval_every == 0 or step == total
            if not evaluating and step % log_every != 0:
                continue
            point = {
                "step": float(step),
                "epoch": float(epoch),
                "train_loss": sum(running) / len(running),
                "lr": float(scheduler.get_last_lr()[0]),
            }
            running = []
            if not evaluating:
                history.append(point)
                continue
            metrics = _evaluate(model, recipe, report, step, total, epoch)
            history.append({**point, **metrics})
            score = metrics[recipe.primary_metric]
            if best is None or score > best[0]:
                best, bad_evals = (score, _snapshot(model), metrics), 0
            else:
                bad_evals += 1
            if hp.early_stopping_patience and bad_evals >= hp.early_stopping_patience:
                stopped_early = True
                break
        if stopped_early or step >= total:
            break

    assert best is not None  # the last step always evaluates
    model.load_state_dict(best[1])
    merge_lora(model)
    model.eval()
    report("evaluate", step, total, hp.epochs - 1, {})
    final = recipe.evaluate(model, final=True)
    return FitResult(dev_metrics=final, history=history, steps=step, stopped_early=stopped_early)


def _evaluate(
    model: nn.Module, recipe: Recipe, report: Report, step: int, total: int, epoch: int
) -> dict[str, float]:
    started = time.perf_counter()
    model.eval()
    metrics = recipe.evaluate(model, final=False)
    metrics["eval_seconds"] = round(time.perf_counter() - started, 2)
    report("evaluate", step, total, epoch, metrics)
    return metrics
