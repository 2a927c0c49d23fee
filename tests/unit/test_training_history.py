"""The training loop's history (``history.json``'s learning curve): the training loss every
few steps, the dev metrics at each evaluation. A toy model stands in for MiniLM (real
training runs are in tests/integration/test_training.py)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from shared.training.hyperparams import Hyperparameters
from shared.training.loop import Device, fit

pytestmark = pytest.mark.unit


class _Toy(nn.Module):
    """What the loop needs of a model: ``bert.embeddings.word_embeddings`` and weights."""

    def __init__(self) -> None:
        super().__init__()
        self.bert = nn.Module()
        self.bert.embeddings = nn.Module()
        self.bert.embeddings.word_embeddings = nn.Embedding(16, 4)
        self.head = nn.Linear(4, 1)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.bert.embeddings.word_embeddings(ids)).squeeze(-1)


class _Recipe:
    """120 batches an epoch; the dev metric is a script."""

    primary_metric = "score"

    def __init__(self) -> None:
        self.scores = iter([0.5, 0.6, 0.7])

    def num_examples(self) -> int:
        return 120

    def num_batches(self) -> int:
        return 120

    def batches(self, epoch: int) -> list[torch.Tensor]:
        return [torch.tensor([i % 16, (i * 7) % 16]) for i in range(120)]

    def loss(self, model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
        return (model(batch) - 1.0).pow(2).mean()

    def evaluate(self, model: nn.Module, final: bool) -> dict[str, float]:
        return {"score": next(self.scores, 0.0)}


def _fit(**overrides: str) -> tuple[list[dict], list[float]]:
    torch.manual_seed(0)
    hp = Hyperparameters.for_kind(
        "cross_encoder",
        {"eval_every": "60", "early_stopping_patience": "0", "freeze_layers": "0", **overrides},
    )
    losses: list[float] = []

    def report(stage: str, step: int, total: int, epoch: int, metrics: dict) -> None:
        if stage == "train":
            losses.append(metrics["train_loss"])

    result = fit(_Toy(), _Recipe(), hp, Device(torch.device("cpu"), None), report=report)
    return result.history, losses


def test_the_history_has_the_loss_every_few_steps_and_the_dev_metrics_at_each_evaluation() -> None:
    history, losses = _fit()
    steps = [int(h["step"]) for h in history]
    assert len(steps) >= 24, steps  # dozens of points, not one per evaluation
    assert steps == sorted(steps) and steps[-1] == 120
    assert all({"step", "epoch", "train_loss", "lr"} <= set(h) for h in history)
    evaluations = [int(h["step"]) for h in history if "score" in h]
    assert evaluations == [60, 120]
    assert [h["score"] for h in history if "score" in h] == [0.5, 0.6]
    # Each point is the mean loss of the steps since the previous point.
    previous = 0
    for point, step in zip(history, steps, strict=True):
        window = losses[previous:step]
        assert point["train_loss"] == pytest.approx(sum(window) / len(window))
        previous = step


def test_log_every_sets_the_loss_interval() -> None:
    history, _ = _fit(log_every="10")
    assert [int(h["step"]) for h in history] == list(range(10, 121, 10))
    assert [int(h["step"]) for h in history if "score" in h] == [60, 120]
