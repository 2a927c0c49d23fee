"""Reader (and row writer) for WANDS, Wayfair's product-search relevance dataset.

WANDS ships three tab-separated files: ``product.csv``, ``query.csv`` and
``label.csv`` (https://github.com/wayfair/WANDS). The real files, the synthetic
store and a folder holding only ``query.csv`` all load through ``load_wands``, so
the same evaluation runs on each.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterator
from pathlib import Path

from shared.data.catalog import Product
from shared.data.dataset import Dataset, Query

PRODUCT_COLUMNS = (
    "product_id",
    "product_name",
    "product_class",
    "category hierarchy",
    "product_description",
    "product_features",
    "rating_count",
    "average_rating",
    "review_count",
)
QUERY_COLUMNS = ("query_id", "query", "query_class")
LABEL_COLUMNS = ("id", "query_id", "product_id", "label")

# WANDS descriptions and feature lists exceed the csv module's 128 KiB default.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


def _rows(path: Path) -> Iterator[dict[str, str]]:
    """Rows as column -> text. Tab-separated; quoted fields ("48"" desk") are unquoted,
    stray quotes inside a field are kept; missing cells read as ""."""
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t", quotechar='"')
        header = next(reader, None)
        if header is None:
            return
        header = [h.strip().lstrip("\ufeff") for h in header]
        for row in reader:
            if not row or all(not cell.strip() for cell in row):
                continue
            yield {name: (row[i] if i < len(row) else "") for i, name in enumerate(header)}


def _number(text: str, kind: type[float] | type[int]) -> float | int:
    text = text.strip()
    if not text:
        return kind(0)
    try:
        return kind(float(text))
    except ValueError:
        return kind(0)


def parse_features(text: str) -> tuple[dict[str, str], float]:
    """``attr:value|attr:value`` -> (lower-case attributes, price). Price is 0 when absent."""
    attributes: dict[str, str] = {}
    price = 0.0
    for item in text.split("|"):
        key, sep, value = item.partition(":")
        key, value = key.strip().lower(), value.strip()
        if not sep or not key:
            continue
        if key == "price":
            price = float(_number(value, float))
        else:
            attributes[key] = value
    return attributes, price


def product_from_row(row: dict[str, str]) -> Product:
    """One product.csv row -> Product. Of several "|"-separated classes the first is kept."""
    attributes, price = parse_features(row.get("product_features", ""))
    classes = [c.strip() for c in row.get("product_class", "").split("|") if c.strip()]
    return Product(
        product_id=row.get("product_id", "").strip(),
        title=row.get("product_name", "").strip(),
        description=row.get("product_description", "").strip(),
        product_class=classes[0] if classes else "",
        category=row.get("category hierarchy", row.get("category_hierarchy", "")).strip(),
        attributes=attributes,
        price=price,
        rating=float(_number(row.get("average_rating", ""), float)),
        review_count=int(_number(row.get("review_count", ""), int)),
    )


def _format_number(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".") if value else ""


def product_to_wands_row(product: Product) -> list[str]:
    """Product -> product.csv cells; price travels as a "price:123.45" feature."""
    features = [f"{key}:{value}" for key, value in product.attributes.items()]
    if product.price:
        features.append(f"price:{product.price:.2f}")
    rating_count = product.review_count + product.review_count // 3 if product.rating else 0
    return [
        product.product_id,
        product.title,
        product.product_class,
        product.category,
        product.description,
        "|".join(features),
        str(rating_count) if product.rating else "",
        _format_number(product.rating),
        str(product.review_count) if product.review_count else "",
    ]


def iter_products(directory: Path) -> Iterator[Product]:
    """Products of ``directory/product.csv`` one at a time, for catalogs too big for a list."""
    for row in _rows(Path(directory) / "product.csv"):
        product = product_from_row(row)
        if product.product_id:
            yield product


def load_queries(path: Path) -> list[Query]:
    """Queries of ``path/query.csv`` (or of ``path`` itself when it is a file); a blank
    query_class becomes None."""
    path = Path(path)
    queries = []
    for row in _rows(path if path.is_file() else path / "query.csv"):
        query_id = row.get("query_id", "").strip()
        if not query_id:
            continue
        query_class = row.get("query_class", "").strip() or None
        queries.append(Query(query_id, row.get("query", "").strip(), query_class))
    return queries


def load_labels(directory: Path) -> dict[str, dict[str, str]]:
    """Judgments of ``directory/label.csv`` as query_id -> product_id -> label."""
    labels: dict[str, dict[str, str]] = {}
    for row in _rows(Path(directory) / "label.csv"):
        query_id, product_id = row.get("query_id", "").strip(), row.get("product_id", "").strip()
        if query_id and product_id:
            labels.setdefault(query_id, {})[product_id] = row.get("label", "").strip()
    return labels


def load_wands(directory: Path) -> Dataset:
    """Load a WANDS-format folder: query.csv is required; product.csv and label.csv are
    read when present (products None and labels empty otherwise)."""
    directory = Path(directory)
    queries = load_queries(directory)
    products = list(iter_products(directory)) if (directory / "product.csv").exists() else None
    labels = load_labels(directory) if (directory / "label.csv").exists() else {}
    return Dataset(queries=queries, products=products, labels=labels, name=directory.name)
