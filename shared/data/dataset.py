"""The shape every relevance dataset is loaded into (WANDS and the synthetic store).

One record type for all of them lets the evaluation harness and the indexers work
on any source without knowing where the data came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.data.catalog import Product

EXACT = "Exact"
PARTIAL = "Partial"
IRRELEVANT = "Irrelevant"
RELEVANCE_LABELS = (EXACT, PARTIAL, IRRELEVANT)


@dataclass(frozen=True, slots=True)
class Query:
    """A shopper's query. ``query_class`` is the product class it asks for, if known."""

    query_id: str
    text: str
    query_class: str | None = None


@dataclass(frozen=True, slots=True)
class Label:
    """One graded judgment: how well ``product_id`` answers ``query_id``."""

    query_id: str
    product_id: str
    label: str


@dataclass(slots=True)
class Dataset:
    """Queries, their graded judgments and (when the files hold them) the products.

    ``labels`` maps query_id -> product_id -> "Exact" / "Partial" / "Irrelevant";
    it is empty for a dataset that holds only queries (then only intent metrics
    can be computed). ``products`` is None when the product file was absent.
    """

    queries: list[Query]
    products: list[Product] | None = None
    labels: dict[str, dict[str, str]] = field(default_factory=dict)
    name: str = ""

    def judged_query_ids(self) -> set[str]:
        """Queries with at least one judgment: the ones ranking metrics are computed on."""
        return {qid for qid, judged in self.labels.items() if judged}


def labels_to_dict(labels: list[Label]) -> dict[str, dict[str, str]]:
    """Group flat judgments by query, the shape the metrics read."""
    grouped: dict[str, dict[str, str]] = {}
    for label in labels:
        grouped.setdefault(label.query_id, {})[label.product_id] = label.label
    return grouped
