"""The synthetic demo store: deterministic, varied like a real catalog, judged by WANDS's rules."""

from __future__ import annotations

import filecmp
from collections import defaultdict
from pathlib import Path

import pytest

from shared.data.dataset import EXACT, IRRELEVANT, PARTIAL
from shared.data.synthetic import (
    SyntheticStore,
    generate_store,
    iter_products,
    main,
    write_synthetic_wands,
    write_wands,
)
from shared.data.synthetic_vocabulary import class_vocabulary, load_classes, related_classes
from shared.data.wands import load_wands
from shared.paths import shared_data_dir

pytestmark = pytest.mark.unit

FILES = ("product.csv", "query.csv", "label.csv", "README.txt")


@pytest.fixture(scope="module")
def store() -> SyntheticStore:
    return generate_store(n_products=4000, n_queries=150, seed=11)


def _same_files(a: Path, b: Path) -> bool:
    return all(filecmp.cmp(a / name, b / name, shallow=False) for name in FILES)


def test_same_seed_same_files_other_seed_other_files(tmp_path: Path) -> None:
    write_wands(generate_store(1500, 60, seed=5), tmp_path / "a")
    write_wands(generate_store(1500, 60, seed=5), tmp_path / "b")
    write_wands(generate_store(1500, 60, seed=6), tmp_path / "c")
    assert _same_files(tmp_path / "a", tmp_path / "b")
    for name in ("product.csv", "query.csv", "label.csv"):
        assert not filecmp.cmp(tmp_path / "a" / name, tmp_path / "c" / name, shallow=False)


def test_streaming_writer_and_cli_write_what_write_wands_writes(tmp_path: Path) -> None:
    write_wands(generate_store(1200, 40, seed=9), tmp_path / "memory")
    write_synthetic_wands(tmp_path / "stream", 1200, 40, seed=9)
    main(["--out", str(tmp_path / "cli"), "--products", "1200", "--queries", "40", "--seed", "9"])
    assert _same_files(tmp_path / "memory", tmp_path / "stream")
    assert _same_files(tmp_path / "memory", tmp_path / "cli")


def test_readme_says_synthetic_with_seed_and_size(tmp_path: Path) -> None:
    write_wands(generate_store(300, 10, seed=4), tmp_path)
    readme = (tmp_path / "README.txt").read_text()
    assert "SYNTHETIC" in readme
    assert "seed: 4" in readme and "products: 300" in readme and "queries: 10" in readme


def test_sizes_and_all_188_classes(store: SyntheticStore) -> None:
    classes = load_classes()
    assert len(classes) == 188
    assert len(store.products) == 4000 and len(store.queries) == 150
    assert {p.product_id for p in store.products} == {str(i) for i in range(4000)}
    assert {p.product_class for p in store.products} <= set(classes)
    assert len({p.product_class for p in store.products}) > 170
    assert len({q.text for q in store.queries}) == len(store.queries)


def test_titles_rarely_repeat_the_class_name(store: SyntheticStore) -> None:
    def singular(name: str) -> str:
        return name.lower()[:-1] if name.lower().endswith("s") else name.lower()

    titles = [(p.title.lower(), p.product_class) for p in store.products]
    verbatim = sum(cls.lower() in title for title, cls in titles) / len(titles)
    singular_hits = sum(singular(cls) in title for title, cls in titles) / len(titles)
    assert verbatim < 0.1
    assert singular_hits < 0.25


def test_many_distinct_nouns_and_brands(store: SyntheticStore) -> None:
    by_class: dict[str, list[str]] = defaultdict(list)
    for p in store.products:
        by_class[p.product_class].append(p.title.lower())
    distinct = []
    for name, titles in by_class.items():
        if len(titles) >= 20:
            nouns = class_vocabulary(name)[0]
            distinct.append(sum(any(n in t for t in titles) for n in nouns))
    assert sum(d >= 4 for d in distinct) / len(distinct) > 0.9
    sofas = " ".join(p.title.lower() for p in store.products if p.product_class == "Sofas")
    assert sum(noun in sofas for noun in ("sofa", "loveseat", "settee", "chesterfield")) >= 3
    assert len({p.attributes["brand"] for p in store.products}) > 100


def test_attributes_only_sometimes_in_the_title(store: SyntheticStore) -> None:
    shown = sum(p.attributes["colour"].lower() in p.title.lower() for p in store.products)
    assert 0.15 < shown / len(store.products) < 0.6
    assert all(
        {"colour", "material", "style", "brand"} <= p.attributes.keys() for p in store.products
    )
    assert all(p.description and p.category.endswith(p.product_class) for p in store.products)
    assert all(p.price > 0 for p in store.products)
    assert all(0 <= p.rating <= 5 for p in store.products)


def test_queries_are_short_and_often_use_words_missing_from_titles(store: SyntheticStore) -> None:
    assert all(1 <= len(q.text.split()) <= 5 for q in store.queries)
    assert all(q.query_class for q in store.queries)
    titles_by_class: dict[str, str] = defaultdict(str)
    for p in store.products:
        titles_by_class[p.product_class] += " " + p.title.lower()
    unseen = sum(
        any(w not in titles_by_class[q.query_class] for w in q.text.lower().split())
        for q in store.queries
        if q.query_class
    )
    assert unseen / len(store.queries) > 0.25
    n_attrs = [len(store.query_attributes[q.query_id]) for q in store.queries]
    assert {0, 1, 2} <= set(n_attrs)


def test_labels_follow_wands_rules(store: SyntheticStore) -> None:
    products = {p.product_id: p for p in store.products}
    queries = {q.query_id: q for q in store.queries}
    seen = defaultdict(int)
    for label in store.labels:
        query, product = queries[label.query_id], products[label.product_id]
        wanted = store.query_attributes[label.query_id]
        seen[label.label] += 1
        same_class = product.product_class == query.query_class
        matches = all(product.attributes.get(k) == v for k, v in wanted.items())
        if label.label == EXACT:
            assert same_class and matches
        elif label.label == PARTIAL:
            assert (same_class and not matches) or (
                product.product_class in related_classes(query.query_class or "")
            )
        else:
            assert label.label == IRRELEVANT
            assert not same_class
            assert product.product_class not in related_classes(query.query_class or "")
    assert min(seen[EXACT], seen[PARTIAL], seen[IRRELEVANT]) > 100


def test_every_product_of_the_target_class_is_judged(store: SyntheticStore) -> None:
    judged: dict[str, set[str]] = defaultdict(set)
    for label in store.labels:
        judged[label.query_id].add(label.product_id)
    for query in store.queries:
        members = {p.product_id for p in store.products if p.product_class == query.query_class}
        assert members <= judged[query.query_id]
        assert len(judged[query.query_id]) > len(members)  # plus related and random others


def test_related_classes_are_symmetric() -> None:
    for name in load_classes():
        for other in related_classes(name):
            assert name in related_classes(other)
    assert "Sectionals" in related_classes("Sofas")
    assert "Area Rugs" not in related_classes("Sofas")


def test_round_trip_through_wands_files(tmp_path: Path, store: SyntheticStore) -> None:
    write_wands(store, tmp_path)
    loaded = load_wands(tmp_path)
    assert loaded.products == store.products
    assert loaded.queries == store.queries
    assert loaded.labels == store.to_dataset().labels


def test_custom_class_list_uses_the_fallback_vocabulary(tmp_path: Path) -> None:
    classes = tmp_path / "classes.txt"
    classes.write_text("Sofas\nGarden Hoses & Reels\n")
    store = generate_store(200, 10, seed=1, classes_path=classes)
    hoses = [p for p in store.products if p.product_class == "Garden Hoses & Reels"]
    assert hoses and all(("hose" in p.title.lower()) or ("reel" in p.title.lower()) for p in hoses)


@pytest.mark.skipif(
    not (shared_data_dir() / "wands" / "classes.txt").exists(), reason="no shared data"
)
def test_default_taxonomy_is_the_wands_file() -> None:
    assert load_classes()[0] == "Accent Chairs"


def test_a_smaller_store_is_a_prefix_of_a_larger_one() -> None:
    small = list(iter_products(500, seed=3))
    large = list(iter_products(2000, seed=3))
    assert small == large[:500]
    assert generate_store(500, 20, seed=3).products == small
