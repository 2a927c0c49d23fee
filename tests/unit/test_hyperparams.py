"""Training hyperparameters: per-kind defaults, string overrides, messages naming the field."""

from __future__ import annotations

import dataclasses

import pytest

from shared.models.kinds import MODEL_KINDS
from shared.training.hyperparams import HyperparameterError, Hyperparameters

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_every_kind_has_valid_defaults_that_fit_the_token_limits(kind: str) -> None:
    hp = Hyperparameters.for_kind(kind)
    assert hp.max_length <= hp.doc_max_length
    assert Hyperparameters(**hp.to_dict()) == hp


def test_string_overrides_are_parsed_to_each_fields_type() -> None:
    hp = Hyperparameters.for_kind(
        "text_encoder",
        {"learning_rate": "3e-5", "epochs": "2", "lora": "true", "freeze_layers": 3, "seed": "7"},
    )
    assert hp.learning_rate == pytest.approx(3e-5)
    assert hp.epochs == 2 and hp.freeze_layers == 3 and hp.seed == 7
    assert hp.lora is True
    assert Hyperparameters.for_kind("text_encoder", {"lora": "no"}).lora is False


def test_defaults_differ_by_kind_and_are_not_changed_by_an_override() -> None:
    default = Hyperparameters.for_kind("cross_encoder")
    Hyperparameters.for_kind("cross_encoder", {"batch_size": "8"})
    assert Hyperparameters.for_kind("cross_encoder") == default
    assert default.doc_max_length > Hyperparameters.for_kind("intent_classifier").doc_max_length


def test_out_of_range_value_names_the_field_and_the_range() -> None:
    with pytest.raises(HyperparameterError) as raised:
        Hyperparameters.for_kind("intent_classifier", {"learning_rate": "5.0"})
    assert raised.value.field == "learning_rate"
    assert str(raised.value) == "hyperparameters.learning_rate: must be in (0, 0.01], got 5.0"


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        (
            "freeze_layers",
            "7",
            "hyperparameters.freeze_layers: must be an integer in [0, 6], got 7",
        ),
        ("layers", "7", "hyperparameters.layers: must be an integer in [0, 6], got 7"),
        ("epochs", "1.5", "hyperparameters.epochs: must be an integer, got '1.5'"),
        ("lora", "maybe", "hyperparameters.lora: must be true or false, got 'maybe'"),
        ("dropout", "abc", "hyperparameters.dropout: must be a number, got 'abc'"),
        ("temperature", "0", "hyperparameters.temperature: must be in (0, 1], got 0.0"),
        ("cross_encoder_loss", "pairwise", "must be one of listwise, pointwise"),
    ],
)
def test_bad_values_are_rejected_with_the_field_named(name: str, value: str, expected: str) -> None:
    with pytest.raises(HyperparameterError, match="^hyperparameters\\." + name) as raised:
        Hyperparameters.for_kind("cross_encoder", {name: value})
    assert raised.value.field == name
    assert expected in str(raised.value)


def test_unknown_name_and_unknown_kind_are_rejected() -> None:
    with pytest.raises(HyperparameterError, match=r"hyperparameters\.learnin_rate: unknown"):
        Hyperparameters.for_kind("text_encoder", {"learnin_rate": "1e-5"})
    with pytest.raises(HyperparameterError, match=r"hyperparameters\.kind: unknown model kind"):
        Hyperparameters.for_kind("ranker")


def test_query_limit_may_not_exceed_the_document_limit() -> None:
    with pytest.raises(HyperparameterError, match=r"hyperparameters\.max_length: must not exceed"):
        Hyperparameters.for_kind("text_encoder", {"max_length": "64", "doc_max_length": "32"})


def test_record_is_frozen() -> None:
    hp = Hyperparameters.for_kind("intent_classifier")
    with pytest.raises(dataclasses.FrozenInstanceError):
        hp.epochs = 3  # type: ignore[misc]


def test_a_pruned_model_keeps_a_layer_to_train_and_a_sequence_model_has_no_layers_option() -> None:
    # The cross-encoder freezes 2 layers by default: a 2-layer one would train none.
    with pytest.raises(HyperparameterError, match=r"hyperparameters\.freeze_layers: must be below"):
        Hyperparameters.for_kind("cross_encoder", {"layers": "2"})
    pruned = Hyperparameters.for_kind("cross_encoder", {"layers": "2", "freeze_layers": "1"})
    assert (pruned.layers, Hyperparameters.for_kind("cross_encoder").layers) == (2, 0)
    with pytest.raises(HyperparameterError, match=r"hyperparameters\.layers: not used by a seq"):
        Hyperparameters.for_kind("sequence_recommender", {"layers": "3"})
