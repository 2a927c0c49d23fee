"""Training data: the synthetic training store, loading and validation, example builders."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from shared.data.dataset import EXACT, PARTIAL
from shared.data.synthetic import generate_store, write_synthetic_training_store, write_wands
from shared.training.augment import PseudoQueryMaker, augment_query, token_dropout, typo
from shared.training.data import (
    DatasetError,
    TrainingData,
    intent_examples,
    load_training_data,
    pair_examples,
    rank_groups,
)

pytestmark = pytest.mark.unit

N_PRODUCTS, SEED = 400, 5


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_training_store(
        tmp_path_factory.mktemp("train") / "store", N_PRODUCTS, SEED, n_queries=120
    )


@pytest.fixture(scope="module")
def data(store_dir: Path) -> TrainingData:
    return load_training_data(store_dir, kind="cross_encoder")


def test_training_store_shares_the_catalog_but_never_an_eval_query(
    store_dir: Path, tmp_path: Path
) -> None:
    eval_store = generate_store(N_PRODUCTS, 500, SEED)
    write_wands(eval_store, tmp_path)
    assert (store_dir / "product.csv").read_bytes() == (tmp_path / "product.csv").read_bytes()
    training = load_training_data(store_dir)
    queries = training.train_queries + training.dev_queries
    assert len(queries) == 120
    assert all(q.query_id.startswith("t") for q in queries)
    assert not {q.text for q in queries} & {q.text for q in eval_store.queries}
    readme = (store_dir / "README.txt").read_text(encoding="utf-8")
    assert "SYNTHETIC" in readme and "excluded" in readme


def test_split_is_deterministic_disjoint_and_about_fifteen_percent(
    store_dir: Path, data: TrainingData
) -> None:
    again = load_training_data(store_dir, kind="cross_encoder")
    assert [q.query_id for q in again.dev_queries] == [q.query_id for q in data.dev_queries]
    train_ids = {q.query_id for q in data.train_queries}
    assert not train_ids & {q.query_id for q in data.dev_queries}
    share = len(data.dev_queries) / (len(data.dev_queries) + len(train_ids))
    assert 0.05 < share < 0.3
    assert len(data.fingerprint) == 64 and again.fingerprint == data.fingerprint


def test_fingerprint_follows_the_bytes(tmp_path: Path) -> None:
    write_wands(generate_store(30, 6, 1), tmp_path)
    before = load_training_data(tmp_path).fingerprint
    with (tmp_path / "query.csv").open("a", encoding="utf-8") as handle:
        handle.write("99\tvelvet sofa\tSofas\n")
    assert load_training_data(tmp_path).fingerprint != before


def test_missing_folder_and_empty_folder_name_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="dataset folder does not exist"):
        load_training_data(tmp_path / "nope")
    with pytest.raises(DatasetError, match=r"product\.csv: file is missing"):
        load_training_data(tmp_path)


def test_empty_and_corrupt_files_are_named_with_the_line(tmp_path: Path) -> None:
    write_wands(generate_store(30, 6, 1), tmp_path)
    (tmp_path / "query.csv").write_text("", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"query\.csv: file is empty"):
        load_training_data(tmp_path)
    (tmp_path / "query.csv").write_text("query_id\tquery\tquery_class\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"query\.csv: file has a header but no rows"):
        load_training_data(tmp_path)
    (tmp_path / "query.csv").write_text(
        "query_id\tquery\tquery_class\n0\tsofa\tSofas\n1\trug\tArea Rugs\textra\n",
        encoding="utf-8",
    )
    with pytest.raises(DatasetError, match=r"query\.csv: line 3 has 4 columns, expected 3"):
        load_training_data(tmp_path)
    (tmp_path / "query.csv").write_text("id\ttext\n0\tsofa\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"query\.csv: header lacks column\(s\) query_id, query"):
        load_training_data(tmp_path)


def test_ranking_models_need_judged_queries(tmp_path: Path) -> None:
    write_wands(generate_store(30, 6, 1), tmp_path)
    (tmp_path / "label.csv").write_text(
        "id\tquery_id\tproduct_id\tlabel\n0\tunknown\t1\tExact\n", encoding="utf-8"
    )
    with pytest.raises(DatasetError, match=r"label\.csv: no query of query\.csv has a judgment"):
        load_training_data(tmp_path, kind="text_encoder")
    (tmp_path / "label.csv").write_text(
        "id\tquery_id\tproduct_id\tlabel\n0\t0\t1\tGood\n", encoding="utf-8"
    )
    with pytest.raises(DatasetError, match=r"label\.csv: line 2 has label 'Good'"):
        load_training_data(tmp_path, kind="cross_encoder")


def test_classifier_rejects_a_class_it_cannot_learn(tmp_path: Path) -> None:
    write_wands(generate_store(30, 6, 1), tmp_path)
    data = load_training_data(tmp_path, kind="intent_classifier")
    assert set(data.classes) >= {q.query_class for q in data.train_queries}
    with pytest.raises(DatasetError, match="class 'Hammocks' is missing from the data"):
        load_training_data(tmp_path, kind="intent_classifier", classes=[*data.classes, "Hammocks"])
    with pytest.raises(DatasetError, match=r"query\.csv: query \S+ names class '.+', which is not"):
        load_training_data(tmp_path, kind="intent_classifier", classes=data.classes[:1])


def test_intent_examples_add_pseudo_queries_without_brand_words(data: TrainingData) -> None:
    examples = intent_examples(data, 0.5, 0, seed=1)
    n_real = sum(1 for q in data.train_queries if q.query_class)
    assert len(examples) > n_real
    brands = {p.attributes["brand"].lower() for p in data.products}
    pseudo = [e.text for e in examples[n_real:]]
    assert all(1 <= len(t.split()) <= 4 for t in pseudo)
    assert not any(b in t for t in pseudo for b in brands)
    assert {data.classes[e.label] for e in examples} <= set(data.classes)


def test_pseudo_query_keeps_the_product_noun(data: TrainingData) -> None:
    maker = PseudoQueryMaker(data.products)
    product = next(p for p in data.products if p.title.endswith(("Sofa", "Rug", "Desk")))
    query = maker.make(product, random.Random(0))
    assert query.split()[-1] == product.title.split()[-1].lower()


def test_hard_negatives_are_never_relevant(data: TrainingData) -> None:
    examples = pair_examples(data, 2, 0.0, 0, seed=1)
    by_text = {q.text: q for q in data.train_queries}
    for example in examples:
        judged = data.judged(by_text[example.query])
        assert judged[example.positive] in (EXACT, PARTIAL)
        assert all(judged.get(r) not in (EXACT, PARTIAL) for r in example.negatives)
        assert example.negatives


def test_rank_groups_lead_with_a_relevant_product_and_grade_the_rest(data: TrainingData) -> None:
    groups = rank_groups(data, 6, 0, seed=1)
    assert groups
    for group in groups:
        assert len(group.rows) == len(set(group.rows)) <= 6
        assert group.gains[0] > 0
        assert set(group.gains) <= {0.0, 0.5, 1.0}
    assert len(rank_groups(data, 6, 5, seed=1)) == 5
    query = data.dev_queries[0]
    assert len(data.candidates(query)) <= 50


def test_augmentations_look_like_shopper_noise() -> None:
    rng = random.Random(3)
    assert token_dropout(["grey", "velvet", "sofa"], rng)[-1] == "sofa"
    assert typo(["rug"], rng) == ["rug"]
    assert augment_query("grey sofa", rng, 0.0) == "grey sofa"
    changed = {augment_query("grey velvet sofa", random.Random(i), 1.0) for i in range(30)}
    assert "grey velvet sofa" not in changed or len(changed) > 1
    assert any("couch" in t or "gray" in t for t in changed)
