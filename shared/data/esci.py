"""Reader for Amazon's Shopping Queries Dataset (ESCI), the other public product-search
relevance benchmark (https://github.com/amazon-science/esci-data).

ESCI's four grades map onto WANDS's three so one evaluation serves both: E (exact)
-> Exact; S (substitute) and C (complement) -> Partial; I (irrelevant) -> Irrelevant.
ESCI has no product classes, so queries carry no query_class (no intent metrics).
"""

from __future__ import annotations

from pathlib import Path

from shared.data.catalog import Product
from shared.data.dataset import EXACT, IRRELEVANT, PARTIAL, Dataset, Query

EXAMPLES_FILE = "shopping_queries_dataset_examples.parquet"
PRODUCTS_FILE = "shopping_queries_dataset_products.parquet"
ESCI_TO_WANDS = {"E": EXACT, "S": PARTIAL, "C": PARTIAL, "I": IRRELEVANT}


def _text(value: object) -> str:
    return "" if value is None else str(value).strip()


def load_esci(
    directory: Path,
    locale: str = "us",
    split: str | None = "test",
    small_version: bool = True,
) -> Dataset:
    """Load ESCI's examples and products for one locale and split (None: both splits).

    ``small_version`` keeps the reduced set the task-1 ranking benchmark uses. Products
    are those the kept examples judge; brand and colour become attributes ("brand",
    "colour"); the description joins ESCI's description and bullet points.
    """
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    directory = Path(directory)
    examples = pq.read_table(
        directory / EXAMPLES_FILE,
        columns=["query", "query_id", "product_id", "product_locale", "esci_label",
                 "small_version", "split"],
    )  # fmt: skip
    mask = pc.equal(examples["product_locale"], locale)
    if split is not None:
        mask = pc.and_(mask, pc.equal(examples["split"], split))
    if small_version:
        mask = pc.and_(mask, pc.equal(examples["small_version"], 1))
    examples = examples.filter(mask)

    queries: dict[str, Query] = {}
    labels: dict[str, dict[str, str]] = {}
    for row in examples.select(["query", "query_id", "product_id", "esci_label"]).to_pylist():
        query_id = _text(row["query_id"])
        if query_id not in queries:
            queries[query_id] = Query(query_id, _text(row["query"]), None)
        label = ESCI_TO_WANDS.get(_text(row["esci_label"]).upper())
        if label is not None:
            labels.setdefault(query_id, {})[_text(row["product_id"])] = label

    judged = {pid for per_query in labels.values() for pid in per_query}
    products_path = directory / PRODUCTS_FILE
    products: list[Product] | None = None
    if products_path.exists():
        table = pq.read_table(products_path)
        table = table.filter(pc.equal(table["product_locale"], locale))
        table = table.filter(pc.is_in(table["product_id"], value_set=_string_array(judged)))
        products = [_product(row) for row in table.to_pylist()]
    return Dataset(
        queries=list(queries.values()),
        products=products,
        labels=labels,
        name=f"esci-{locale}-{split or 'all'}{'-small' if small_version else ''}",
    )


def _string_array(values: set[str]) -> object:
    import pyarrow as pa

    return pa.array(sorted(values), type=pa.string())


def _product(row: dict[str, object]) -> Product:
    attributes = {
        key: _text(row.get(column))
        for key, column in (("brand", "product_brand"), ("colour", "product_color"))
        if _text(row.get(column))
    }
    # Bullet points often say more than the description; BM25 and the encoder get both.
    parts = (_text(row.get("product_description")), _text(row.get("product_bullet_point")))
    description = " ".join(p for p in parts if p)
    return Product(
        product_id=_text(row.get("product_id")),
        title=_text(row.get("product_title")),
        description=description,
        attributes=attributes,
    )
