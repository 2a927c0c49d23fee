"""SYNTHETIC demo store: a seeded, deterministic generator of WANDS-shaped search data.

Everything this module produces is synthetic. The class taxonomy is the real one
(the 188 Wayfair classes that WANDS queries use), but every product, brand, query
and judgment is invented from the tables of ``synthetic_vocabulary``. It exists so that the suite can be
demonstrated, indexed and benchmarked at any size (20k products by default, up to
1,000,000) without shipping real catalog data, and so that keyword and dense
retrieval can be told apart: titles use varied product-type nouns (sofa, settee,
chesterfield ...) and shoppers often use a synonym the titles never contain
(couch), exactly the gap dense retrieval is meant to close.

Judgments follow WANDS's annotation rules: a product of the query's class whose
attributes match every attribute the query names is Exact; the right class with an
attribute mismatch, or a closely related class, is Partial; anything else is
Irrelevant. Each query is judged on a pool (the products of its class, a sample
of related classes and a random sample of the rest), as WANDS pooled its judgments.

``python -m shared.data.synthetic --out DIR`` writes the store in WANDS's file
format, with a README.txt that says it is synthetic and how it was made.
"""

from __future__ import annotations

import argparse
import bisect
import csv
import math
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from shared.data.catalog import Product
from shared.data.dataset import EXACT, IRRELEVANT, PARTIAL, Dataset, Label, Query, labels_to_dict
from shared.data.synthetic_vocabulary import (
    ATTRIBUTE_KEYS,
    BRAND_SUFFIXES,
    EXTRA_AFTER,
    EXTRA_BEFORE,
    QUERY_FORMS,
    STYLES,
    SYLLABLE_END,
    SYLLABLE_START,
    TYPO_RATE,
    ClassSpec,
    class_spec,
    load_classes,
    related_classes,
)
from shared.data.wands import (
    LABEL_COLUMNS,
    PRODUCT_COLUMNS,
    QUERY_COLUMNS,
    product_to_wands_row,
)


def judge(
    query_class: str,
    query_attributes: dict[str, str],
    product_class: str,
    product_attributes: dict[str, str],
) -> str:
    """WANDS's rule: right type and every named attribute matches -> Exact; right type
    with a mismatch, or a closely related type -> Partial; otherwise Irrelevant."""
    if product_class == query_class:
        for key, value in query_attributes.items():
            if product_attributes.get(key) != value:
                return PARTIAL
        return EXACT
    if product_class in related_classes(query_class):
        return PARTIAL
    return IRRELEVANT


@dataclass(slots=True)
class SyntheticStore:
    """A generated store: products, queries and graded judgments.

    ``query_attributes`` keeps each query's target (query_id -> the attributes it
    names, e.g. {"colour": "Gray", "material": "Velvet"}); its class is the query's
    ``query_class``. WANDS files cannot carry it; it is here for tests and analysis.
    """

    products: list[Product]
    queries: list[Query]
    labels: list[Label]
    seed: int = 7
    query_attributes: dict[str, dict[str, str]] = field(default_factory=dict)

    def to_dataset(self) -> Dataset:
        """The store in the shape the loaders return, ready for the evaluation harness."""
        return Dataset(
            queries=list(self.queries),
            products=list(self.products),
            labels=labels_to_dict(self.labels),
            name=f"synthetic-{len(self.products)}-seed{self.seed}",
        )


class _Names:
    """Brand and product-line names made of syllables, so no real brand is copied."""

    def __init__(self, rng: random.Random, n_brands: int, n_lines: int) -> None:
        self.brands = self._unique(rng, n_brands, self._brand)
        self.lines = self._unique(rng, n_lines, self._word)

    @staticmethod
    def _word(rng: random.Random) -> str:
        return rng.choice(SYLLABLE_START) + rng.choice(SYLLABLE_END)

    @classmethod
    def _brand(cls, rng: random.Random) -> str:
        if rng.random() < 0.25:
            return f"{cls._word(rng)} {cls._word(rng)}"
        return f"{cls._word(rng)} {rng.choice(BRAND_SUFFIXES)}"

    @staticmethod
    def _unique(rng: random.Random, n: int, make: Callable[[random.Random], str]) -> list[str]:
        seen: dict[str, None] = {}
        for _ in range(n * 20):
            if len(seen) >= n:
                break
            seen.setdefault(make(rng), None)
        return list(seen)


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def _title_case(text: str) -> str:
    return " ".join(
        w if w[:1].isupper() or w[:1].isdigit() else w.capitalize() for w in text.split()
    )


_N_BRANDS = 2000
_N_PRODUCT_LINES = 1500


class _ProductFactory:
    """Makes products one at a time from one seeded stream (so 1M never sit in memory)."""

    def __init__(self, classes: list[str], seed: int) -> None:
        self.specs = [class_spec(name) for name in classes]
        setup = random.Random(f"synthetic-store/{seed}/setup")
        # Real catalogs are unbalanced: a few classes hold many products.
        weights = [setup.lognormvariate(0.0, 0.8) for _ in self.specs]
        self.cum_weights = list(_accumulate(weights))
        self.class_price_factor = [setup.lognormvariate(0.0, 0.35) for _ in self.specs]
        # Fixed name pools (not scaled by size) keep a smaller store a prefix of a larger one.
        self.names = _Names(setup, n_brands=_N_BRANDS, n_lines=_N_PRODUCT_LINES)
        self.rng = random.Random(f"synthetic-store/{seed}/products")

    def make(self, index: int) -> tuple[Product, int]:
        """The product with this index, and the index of its class."""
        rng = self.rng
        class_index = bisect.bisect_right(self.cum_weights, rng.random() * self.cum_weights[-1])
        class_index = min(class_index, len(self.specs) - 1)
        spec = self.specs[class_index]
        family = spec.family
        colour = rng.choice(family.colours)
        material = rng.choice(family.materials)
        style = rng.choice(STYLES)
        size = rng.choice(spec.sizes) if spec.sizes else ""
        brand = rng.choice(self.names.brands)
        line = rng.choice(self.names.lines)
        noun = rng.choice(spec.title_nouns)

        words: list[str] = []
        if rng.random() < 0.25:
            words.append(brand)
        if rng.random() < 0.7:
            words.append(line)
        shown: dict[str, str] = {}
        for key, value, rate in (
            ("size", size, 0.3), ("style", style, 0.15), ("colour", colour, 0.3),
            ("material", material, 0.35),
        ):  # fmt: skip
            if value and rng.random() < rate:
                shown[key] = value
                words.append(value)
        if rng.random() < 0.4:
            words.append(rng.choice(family.adjectives))
        words.append(_title_case(noun))
        if rng.random() < 0.3:
            words.append(rng.choice(family.suffixes))
        title = " ".join(words)

        room = rng.choice(family.rooms)
        sentences = [
            rng.choice(
                (
                    f"This {noun} brings {_article(style)} {style.lower()} look to your {room}.",
                    f"{_article(style).capitalize()} {style.lower()} {noun} made for the {room}.",
                    f"Designed for the {room}, this {noun} keeps things simple.",
                    f"The {line} {noun} from {brand} suits any {room}.",
                )
            )
        ]
        details = []
        if "material" not in shown or rng.random() < 0.5:
            details.append(f"is made of {material.lower()}")
        if "colour" not in shown or rng.random() < 0.5:
            details.append(f"comes in a {colour.lower()} finish")
        if details and rng.random() < 0.8:
            sentences.append(f"It {' and '.join(details)}.")
        if size and rng.random() < 0.5:
            sentences.append(f"Size: {size}.")
        description = " ".join(sentences)

        attributes = {"colour": colour, "material": material, "style": style, "brand": brand}
        if size:
            attributes["size"] = size
        price = family.price_median * self.class_price_factor[class_index]
        price *= math.exp(0.55 * rng.gauss(0.0, 1.0))
        price = round(max(price, 2.0), 0) - (0.01 if rng.random() < 0.6 else 0.0)
        if rng.random() < 0.2:
            rating, reviews = 0.0, 0
        else:
            rating = round(min(5.0, max(1.0, rng.gauss(4.3, 0.55))), 1)
            reviews = 1 + int(rng.lognormvariate(2.3, 1.4))
        product = Product(
            product_id=str(index),
            title=title,
            description=description,
            product_class=spec.name,
            category=spec.category,
            attributes=attributes,
            price=round(price, 2),
            rating=rating,
            review_count=reviews,
        )
        return product, class_index


def _accumulate(values: list[float]) -> Iterator[float]:
    total = 0.0
    for value in values:
        total += value
        yield total


def iter_products(
    n_products: int = 20000, seed: int = 7, classes_path: Path | None = None
) -> Iterator[Product]:
    """The store's products one by one, in order: streams a catalog of any size."""
    factory = _ProductFactory(load_classes(classes_path), seed)
    for index in range(n_products):
        yield factory.make(index)[0]


class _CatalogIndex:
    """What queries and judgments need of each product, compactly (class and attributes)."""

    def __init__(self, specs: list[ClassSpec]) -> None:
        self.specs = specs
        self.class_of: list[int] = []
        self.attrs: list[tuple[str, ...]] = []
        self.by_class: list[list[int]] = [[] for _ in specs]
        self._interned: dict[str, str] = {}

    def add(self, product: Product, class_index: int) -> None:
        intern = self._interned.setdefault
        self.class_of.append(class_index)
        self.attrs.append(
            tuple(intern(v, v) for v in (product.attributes.get(k, "") for k in ATTRIBUTE_KEYS))
        )
        self.by_class[class_index].append(len(self.class_of) - 1)

    def attributes(self, index: int) -> dict[str, str]:
        return {k: v for k, v in zip(ATTRIBUTE_KEYS, self.attrs[index], strict=True) if v}


def _typo(word: str, rng: random.Random) -> str:
    if len(word) < 4:
        return word
    i = rng.randrange(1, len(word) - 1)
    kind = rng.random()
    if kind < 0.4:
        return word[:i] + word[i + 1 :]
    if kind < 0.7:
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    return word[:i] + word[i] + word[i:]


def _query_form(key: str, value: str, rng: random.Random) -> str:
    if value in QUERY_FORMS:
        return rng.choice(QUERY_FORMS[value])
    text = value.lower()
    text = re.sub(r"(\d+)' x (\d+)'", r"\1x\2", text)
    text = text.replace("''", rng.choice((" inch", "in", "''"))).replace("'", " ft")
    return re.sub(r"\s+", " ", text).strip()


# Which attributes a shopper names, and how often.
_ATTRIBUTE_WEIGHTS = {"colour": 0.35, "material": 0.25, "style": 0.2, "size": 0.2}


def _make_queries(
    index: _CatalogIndex,
    n_queries: int,
    seed: int,
    stream: str = "queries",
    exclude: frozenset[str] = frozenset(),
    id_prefix: str = "",
) -> tuple[list[Query], dict[str, dict[str, str]]]:
    """Queries drawn from the rng stream ``stream`` (another stream gives other queries);
    texts in ``exclude`` are skipped; ids are ``id_prefix`` + a running number."""
    rng = random.Random(f"synthetic-store/{seed}/{stream}")
    populated = [i for i, members in enumerate(index.by_class) if members]
    if not populated:
        return [], {}
    queries: list[Query] = []
    targets: dict[str, dict[str, str]] = {}
    seen: set[str] = set(exclude)
    attempts = 0
    while len(queries) < n_queries and attempts < n_queries * 50:
        attempts += 1
        if rng.random() < 0.5:  # half follow the catalog's mix, half spread over all classes
            class_index = index.class_of[rng.randrange(len(index.class_of))]
        else:
            class_index = rng.choice(populated)
        spec = index.specs[class_index]
        anchor = rng.choice(index.by_class[class_index])
        available = index.attributes(anchor)
        keys = [k for k in ATTRIBUTE_KEYS if k in available]
        n_attributes = rng.choices((0, 1, 2), weights=(0.4, 0.42, 0.18))[0]
        chosen: list[str] = []
        while len(chosen) < min(n_attributes, len(keys)):
            key = rng.choices(keys, weights=[_ATTRIBUTE_WEIGHTS[k] for k in keys])[0]
            if key not in chosen:
                chosen.append(key)
        wanted = {k: available[k] for k in ATTRIBUTE_KEYS if k in chosen}
        pool = spec.query_nouns if rng.random() < 0.75 else spec.title_nouns
        noun = rng.choice(pool).lower()
        before = [_query_form(k, wanted[k], rng) for k in ("style", "size", "colour", "material")
                  if k in wanted]  # fmt: skip
        words = [*before, noun]
        if rng.random() < 0.12:
            if rng.random() < 0.5:
                words = [rng.choice(EXTRA_BEFORE), *words]
            else:
                words = [*words, rng.choice(EXTRA_AFTER)]
        text = " ".join(words)
        tokens = text.split()
        if len(tokens) > 5:
            continue
        if rng.random() < TYPO_RATE:
            j = rng.randrange(len(tokens))
            tokens[j] = _typo(tokens[j], rng)
            text = " ".join(tokens)
        if text in seen:
            continue
        seen.add(text)
        query_id = f"{id_prefix}{len(queries)}"
        queries.append(Query(query_id=query_id, text=text, query_class=spec.name))
        targets[query_id] = wanted
    return queries, targets


# Pool sizes per query: every product of the target class (sampled above this cap),
# a sample of related classes and a random sample of the rest, as WANDS pooled.
_POOL_CLASS_CAP = 1000
_POOL_RELATED = 40
_POOL_RANDOM = 30


def _make_labels(
    index: _CatalogIndex,
    queries: list[Query],
    targets: dict[str, dict[str, str]],
    seed: int,
    stream: str = "labels",
) -> Iterator[Label]:
    rng = random.Random(f"synthetic-store/{seed}/{stream}")
    class_index_of = {spec.name: i for i, spec in enumerate(index.specs)}
    n = len(index.class_of)
    for query in queries:
        assert query.query_class is not None
        target = class_index_of[query.query_class]
        wanted = targets[query.query_id]
        members = index.by_class[target]
        pool = set(
            members if len(members) <= _POOL_CLASS_CAP else rng.sample(members, _POOL_CLASS_CAP)
        )
        related = [
            p
            for name in sorted(related_classes(query.query_class))
            if name in class_index_of
            for p in index.by_class[class_index_of[name]]
        ]
        pool.update(rng.sample(related, min(_POOL_RELATED, len(related))))
        pool.update(rng.randrange(n) for _ in range(min(_POOL_RANDOM, n)))
        for p in sorted(pool):
            label = judge(
                query.query_class,
                wanted,
                index.specs[index.class_of[p]].name,
                index.attributes(p),
            )
            yield Label(query.query_id, str(p), label)


def generate_store(
    n_products: int = 20000,
    n_queries: int = 500,
    seed: int = 7,
    classes_path: Path | None = None,
) -> SyntheticStore:
    """A whole synthetic store in memory; the same arguments always give the same store."""
    factory = _ProductFactory(load_classes(classes_path), seed)
    index = _CatalogIndex(factory.specs)
    products = []
    for i in range(n_products):
        product, class_index = factory.make(i)
        index.add(product, class_index)
        products.append(product)
    queries, targets = _make_queries(index, n_queries, seed)
    labels = list(_make_labels(index, queries, targets, seed))
    return SyntheticStore(products, queries, labels, seed=seed, query_attributes=targets)


def _readme_text(n_products: int, n_queries: int, n_labels: int, seed: int) -> str:
    return (
        "SYNTHETIC DATA - generated by shared.data.synthetic, not real products or shoppers.\n"
        "\n"
        f"seed: {seed}\nproducts: {n_products}\nqueries: {n_queries}\njudgments: {n_labels}\n"
        "\n"
        "Files follow the WANDS format (tab-separated product.csv, query.csv, label.csv).\n"
        "The class taxonomy is WANDS's (Wayfair classes); every product, brand, query and\n"
        "judgment is invented. product_features carries price as 'price:123.45'.\n"
        f"Regenerate: python -m shared.data.synthetic --out DIR --products {n_products} "
        f"--queries {n_queries} --seed {seed}\n"
    )


def _writer(handle: TextIO) -> Any:
    return csv.writer(handle, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_MINIMAL)


def _write_queries_and_labels(
    out_dir: Path, queries: list[Query], labels: Iterator[Label] | list[Label]
) -> int:
    with (out_dir / "query.csv").open("w", encoding="utf-8", newline="") as handle:
        writer = _writer(handle)
        writer.writerow(QUERY_COLUMNS)
        for query in queries:
            writer.writerow([query.query_id, query.text, query.query_class or ""])
    count = 0
    with (out_dir / "label.csv").open("w", encoding="utf-8", newline="") as handle:
        writer = _writer(handle)
        writer.writerow(LABEL_COLUMNS)
        for count, label in enumerate(labels, start=1):
            writer.writerow([count - 1, label.query_id, label.product_id, label.label])
    return count


def write_wands(store: SyntheticStore, out_dir: Path) -> None:
    """Write the store as WANDS's three files plus a README.txt that says it is synthetic."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / "product.csv").open("w", encoding="utf-8", newline="") as handle:
        writer = _writer(handle)
        writer.writerow(PRODUCT_COLUMNS)
        for product in store.products:
            writer.writerow(product_to_wands_row(product))
    n_labels = _write_queries_and_labels(out_dir, store.queries, store.labels)
    (out_dir / "README.txt").write_text(
        _readme_text(len(store.products), len(store.queries), n_labels, store.seed),
        encoding="utf-8",
    )


def write_synthetic_wands(
    out_dir: Path,
    n_products: int = 20000,
    n_queries: int = 500,
    seed: int = 7,
    classes_path: Path | None = None,
    progress: bool = False,
) -> int:
    """Generate and write a store without holding its products in memory (for 1M+).

    Writes byte-for-byte what ``write_wands(generate_store(...))`` writes. Returns the
    number of judgments.
    """
    from tqdm import tqdm

    out_dir.mkdir(parents=True, exist_ok=True)
    factory = _ProductFactory(load_classes(classes_path), seed)
    index = _CatalogIndex(factory.specs)
    with (out_dir / "product.csv").open("w", encoding="utf-8", newline="") as handle:
        writer = _writer(handle)
        writer.writerow(PRODUCT_COLUMNS)
        for i in tqdm(range(n_products), desc="products", unit="p", disable=not progress):
            product, class_index = factory.make(i)
            index.add(product, class_index)
            writer.writerow(product_to_wands_row(product))
    queries, targets = _make_queries(index, n_queries, seed)
    n_labels = _write_queries_and_labels(
        out_dir, queries, _make_labels(index, queries, targets, seed)
    )
    (out_dir / "README.txt").write_text(
        _readme_text(n_products, len(queries), n_labels, seed), encoding="utf-8"
    )
    return n_labels


_TRAINING_QUERY_STREAM = "training-queries"
_TRAINING_LABEL_STREAM = "training-labels"
_EVAL_QUERIES = 500


def write_synthetic_training_store(
    out_dir: Path,
    n_products: int = 20000,
    seed: int = 7,
    n_queries: int = 3000,
    classes_path: Path | None = None,
) -> Path:
    """Write a SYNTHETIC training store for fine-tuning: the demo store's products with
    new queries that never repeat a query of its held-out evaluation set.

    ``product.csv`` is byte-identical to the demo store's (same ``n_products`` and
    ``seed``); the queries come from another rng stream, skip every query text of
    ``generate_store(n_products, 500, seed)`` and have ids prefixed "t"; they are judged
    by the same rule (:func:`judge`) on the same kind of pool. Returns ``out_dir``.
    """
    if n_queries < 1:
        raise ValueError(f"n_queries: must be at least 1, got {n_queries}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    factory = _ProductFactory(load_classes(classes_path), seed)
    index = _CatalogIndex(factory.specs)
    with (out_dir / "product.csv").open("w", encoding="utf-8", newline="") as handle:
        writer = _writer(handle)
        writer.writerow(PRODUCT_COLUMNS)
        for i in range(n_products):
            product, class_index = factory.make(i)
            index.add(product, class_index)
            writer.writerow(product_to_wands_row(product))
    eval_queries, _ = _make_queries(index, _EVAL_QUERIES, seed)
    queries, targets = _make_queries(
        index,
        n_queries,
        seed,
        stream=_TRAINING_QUERY_STREAM,
        exclude=frozenset(q.text for q in eval_queries),
        id_prefix="t",
    )
    labels = _make_labels(index, queries, targets, seed, stream=_TRAINING_LABEL_STREAM)
    n_labels = _write_queries_and_labels(out_dir, queries, labels)
    (out_dir / "README.txt").write_text(
        "SYNTHETIC TRAINING QUERIES - generated by shared.data.synthetic, not real shoppers.\n"
        "\n"
        f"seed: {seed}\nproducts: {n_products}\nqueries: {len(queries)}\n"
        f"judgments: {n_labels}\n"
        "\n"
        "product.csv is byte-identical to the demo store of the same size and seed.\n"
        f"The queries are new (rng stream {_TRAINING_QUERY_STREAM!r}, ids prefixed 't'):\n"
        f"every query text of the held-out evaluation set ({_EVAL_QUERIES} queries) is\n"
        "excluded, so a model trained here can be evaluated on the demo store.\n"
        f"Regenerate: python -m shared.data.synthetic --training --out DIR "
        f"--products {n_products} --queries {n_queries} --seed {seed}\n",
        encoding="utf-8",
    )
    return out_dir


def main(argv: list[str] | None = None) -> None:
    """Command line: write a synthetic store (or a training store) in WANDS format."""
    parser = argparse.ArgumentParser(description="Write a SYNTHETIC demo store in WANDS format.")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--products", type=int, default=20000)
    parser.add_argument("--queries", type=int, default=None, help="default 500 (3000 training)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--classes", type=Path, default=None, help="classes.txt (default WANDS)")
    parser.add_argument(
        "--training",
        action="store_true",
        help="write training queries that exclude the evaluation set's queries",
    )
    args = parser.parse_args(argv)
    if args.training:
        write_synthetic_training_store(
            args.out, args.products, args.seed, args.queries or 3000, args.classes
        )
        print(f"wrote a SYNTHETIC training store to {args.out}")
        return
    args.queries = args.queries or _EVAL_QUERIES
    n_labels = write_synthetic_wands(
        args.out, args.products, args.queries, args.seed, args.classes, progress=True
    )
    print(
        f"wrote {args.products} products, {args.queries} queries, {n_labels} judgments to {args.out}"
    )


if __name__ == "__main__":
    main()
