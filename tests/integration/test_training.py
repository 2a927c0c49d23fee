"""Fine-tuning with real weights on a tiny synthetic store: every kind, every option.

Runs are a few steps long (batch 4): they check the code paths and their contracts
(checkpoints that load, metric keys, reproducibility, early stopping, cancellation),
not model quality, which the default runs on the demo store measure.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from shared.data.synthetic import generate_store, write_wands
from shared.training.hyperparams import Hyperparameters
from shared.training.loop import fit, pick_device
from shared.training.modules import ModelSpec, ShopsenseModel
from shared.training.train import Progress, TrainingCancelled, train_model

pytestmark = pytest.mark.integration

TINY = {
    "max_steps": "3",
    "batch_size": "4",
    "eval_every": "2",
    "max_length": "12",
    "freeze_layers": "4",
}
METRICS = {
    "intent_classifier": {"intent_top1", "intent_top3"},
    "text_encoder": {"ndcg@10", "recall@100", "mrr@10"},
    "cross_encoder": {"ndcg@10", "mrr@10"},
}


def _hp(kind: str, **extra: str) -> Hyperparameters:
    overrides = {**TINY, "doc_max_length": "24", "max_train_examples": "16", **extra}
    if kind == "cross_encoder":
        overrides["group_size"] = "2"
    return Hyperparameters.for_kind(kind, overrides)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("store")
    write_wands(generate_store(40, 12, seed=3), folder)
    return folder


@pytest.fixture(scope="module")
def cross_encoder_run(store: Path, tmp_path_factory: pytest.TempPathFactory):
    return train_model(
        "cross_encoder", store, tmp_path_factory.mktemp("cross"), _hp("cross_encoder")
    )


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return ShopsenseModel.load(folder).state_dict()


def test_cross_encoder_trains_and_saves_a_loadable_checkpoint(cross_encoder_run) -> None:
    result = cross_encoder_run
    model = ShopsenseModel.load(result.checkpoint_dir)
    assert model.spec.kind == "cross_encoder" and model.spec.doc_max_length == 24
    assert set(result.dev_metrics) == METRICS["cross_encoder"]
    # The training loss at every step of so short a run, the dev metrics at each evaluation.
    assert [h["step"] for h in result.history] == [1.0, 2.0, 3.0]
    assert [h["step"] for h in result.history if "ndcg@10" in h] == [2.0, 3.0]
    assert {"train_loss", "lr", "epoch", *METRICS["cross_encoder"]} <= set(result.history[1])
    saved = json.loads((result.checkpoint_dir.parent / "history.json").read_text())
    assert saved["dev_metrics"] == result.dev_metrics and saved["data_fingerprint"]
    assert saved["history"] == result.history


def test_classifier_with_frozen_layers_is_reproducible(store: Path, tmp_path: Path) -> None:
    hp = _hp("intent_classifier", freeze_layers="3", label_smoothing="0.2")
    reports: list[Progress] = []
    first = train_model("intent_classifier", store, tmp_path / "a", hp, progress=reports.append)
    second = train_model("intent_classifier", store, tmp_path / "b", hp)
    a, b = _weights(first.checkpoint_dir), _weights(second.checkpoint_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert set(first.dev_metrics) == METRICS["intent_classifier"]
    base = ShopsenseModel.pretrained(ModelSpec("intent_classifier", labels=["x"])).state_dict()
    lower = "bert.encoder.layer.0.attention.self.query.weight"
    upper = "bert.encoder.layer.5.attention.self.query.weight"
    assert torch.equal(a[lower], base[lower])
    assert not torch.equal(a[upper], base[upper])
    assert [p.stage for p in reports][:2] == ["prepare", "train"] and reports[-1].stage == "save"
    assert len(ShopsenseModel.load(first.checkpoint_dir).spec.labels) > 1


def test_text_encoder_with_lora_fgm_and_distillation(
    store: Path, tmp_path: Path, cross_encoder_run
) -> None:
    hp = _hp("text_encoder", lora="true", fgm_epsilon="0.5", distill_weight="0.5")
    result = train_model(
        "text_encoder",
        store,
        tmp_path,
        hp,
        teacher_checkpoint=cross_encoder_run.checkpoint_dir,
    )
    weights = _weights(result.checkpoint_dir)
    assert not any("lora" in k for k in weights)  # merged before saving
    base = ShopsenseModel.pretrained(ModelSpec("text_encoder")).state_dict()
    key = "bert.encoder.layer.0.attention.self.value.weight"
    assert not torch.equal(weights[key], base[key])
    assert set(result.dev_metrics) == METRICS["text_encoder"]
    assert result.hyperparameters["lora"] is True and result.train_examples > 0


def test_a_pruned_cross_encoder_keeps_the_full_ones_first_layers_and_learns_its_scores(
    store: Path, tmp_path: Path, cross_encoder_run
) -> None:
    """layers=3 from the full checkpoint: its first three layers, distilled from it; the
    export serves a three-layer graph; a checkpoint cannot grow layers back."""
    from shared.training.data import load_training_data
    from shared.training.export import export_checkpoint
    from shared.training.recipes import CrossEncoderRecipe

    full = cross_encoder_run.checkpoint_dir
    hp = _hp("cross_encoder", layers="3", freeze_layers="1", distill_weight="1.0")
    result = train_model(
        "cross_encoder", store, tmp_path / "pruned", hp, init_checkpoint=full,
        teacher_checkpoint=full,
    )  # fmt: skip
    student = ShopsenseModel.load(result.checkpoint_dir)
    assert student.spec.layers == 3 and len(student.bert.encoder.layer) == 3
    weights, teacher = student.state_dict(), _weights(full)
    assert not any(k.startswith("bert.encoder.layer.3.") for k in weights)
    frozen = "bert.encoder.layer.0.attention.self.query.weight"  # kept as the teacher had it
    assert torch.equal(weights[frozen], teacher[frozen])
    assert set(result.dev_metrics) == METRICS["cross_encoder"]

    # The distillation term: 0 against itself, positive against another model's scores.
    data = load_training_data(store, kind="cross_encoder")
    batch = next(CrossEncoderRecipe(data, hp, pick_device()).batches(0))
    plain = CrossEncoderRecipe(data, hp, pick_device()).loss(student.eval(), batch)
    itself = CrossEncoderRecipe(data, hp, pick_device(), ShopsenseModel.load(result.checkpoint_dir))
    taught = CrossEncoderRecipe(data, hp, pick_device(), ShopsenseModel.load(full))
    with torch.no_grad():
        assert itself.loss(student, batch).item() == pytest.approx(plain.item(), abs=1e-5)
        assert taught.loss(student, batch).item() > plain.item() + 1e-4

    report = export_checkpoint(result.checkpoint_dir, tmp_path / "export")
    assert report.kind == "cross_encoder"
    import onnx

    graph = onnx.load(str(tmp_path / "export" / "model.fp32.onnx"), load_external_data=False)
    names = " ".join(node.name for node in graph.graph.node)
    assert "layer.2/" in names and "layer.3/" not in names

    with pytest.raises(ValueError, match=r"layers: init_checkpoint .* has 3 transformer layers"):
        train_model(
            "cross_encoder", store, tmp_path / "grown", _hp("cross_encoder", layers="5"),
            init_checkpoint=result.checkpoint_dir,
        )  # fmt: skip


def test_cancellation_writes_no_checkpoint(store: Path, tmp_path: Path) -> None:
    polls = iter(range(100))
    with pytest.raises(TrainingCancelled):
        train_model(
            "intent_classifier",
            store,
            tmp_path,
            _hp("intent_classifier"),
            should_stop=lambda: next(polls) >= 2,
        )
    assert not (tmp_path / "checkpoint").exists()
    assert not (tmp_path / "history.json").exists()


class _ScriptedRecipe:
    """A recipe whose dev metric follows a script, to watch early stopping."""

    primary_metric = "score"

    def __init__(self, scores: list[float]) -> None:
        self.scores = iter(scores)
        self.snapshots: list[torch.Tensor] = []
        self.ids = torch.tensor([[101, 7592, 2088, 102]])

    def num_examples(self) -> int:
        return 8

    def num_batches(self) -> int:
        return 8

    def batches(self, epoch: int) -> list[int]:
        return list(range(8))

    def loss(self, model: torch.nn.Module, batch: int) -> torch.Tensor:
        return model(self.ids, torch.ones_like(self.ids)).pow(2).mean()

    def evaluate(self, model: ShopsenseModel, final: bool) -> dict[str, float]:
        self.snapshots.append(model.head.weight.detach().clone())
        return {"score": next(self.scores, -1.0)}


def test_early_stopping_restores_the_best_weights() -> None:
    torch.manual_seed(0)
    model = ShopsenseModel.pretrained(ModelSpec("cross_encoder"))
    recipe = _ScriptedRecipe([0.5, 0.9, 0.4, 0.3, 0.95])
    hp = Hyperparameters.for_kind(
        "cross_encoder",
        {
            "eval_every": "1",
            "early_stopping_patience": "2",
            "freeze_layers": "6",
            "learning_rate": "0.001",
        },
    )
    result = fit(model, recipe, hp, pick_device())
    assert result.stopped_early and result.steps == 4
    assert [h["score"] for h in result.history] == [0.5, 0.9, 0.4, 0.3]
    assert torch.equal(model.head.weight, recipe.snapshots[1])
    assert not torch.equal(model.head.weight, recipe.snapshots[3])


def test_offline_evaluation_measures_the_zero_shot_intent_baseline(
    store: Path, exported_model_repository: Path, tmp_path: Path, monkeypatch
) -> None:
    """The intent panel's baseline: the zero-shot prototypes on the same dev queries."""
    from shared.training.offline_eval import evaluate_version

    monkeypatch.setenv("SHOPSENSE_STATE_DIR", str(tmp_path))  # the embedding cache
    encoder = exported_model_repository / "text_encoder" / "1"
    metrics = evaluate_version("text_encoder", encoder, store, {})
    assert 0.0 <= metrics["zero_shot/top1"] <= metrics["zero_shot/top3"] <= 1.0
    # Without a classifier in the pipeline, its intent is those prototypes.
    assert metrics["zero_shot/top1"] == metrics["intent/top1"]
    assert metrics["zero_shot/top3"] == metrics["intent/top3"]
