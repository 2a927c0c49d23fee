"""The catalog's product record, shared by the data loaders, the index and the services."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class Product:
    """One product of a store's catalog.

    ``product_class`` is the product type (a Wayfair class name such as "Sofas");
    ``category`` is the "/"-separated category path; ``attributes`` holds
    lower-case attribute names (colour, material, style, size, ...) to values.
    ``price`` is in the store's currency; ``rating`` is 0-5 (0 means unrated);
    ``review_count`` is the number of reviews (a popularity signal).
    """

    product_id: str
    title: str
    description: str = ""
    product_class: str = ""
    category: str = ""
    attributes: dict[str, str] = field(default_factory=dict)
    price: float = 0.0
    rating: float = 0.0
    review_count: int = 0

    def embedding_text(self) -> str:
        """The text the dense encoder sees for this product: title, class and key attributes."""
        parts = [self.title]
        if self.product_class:
            parts.append(self.product_class)
        parts.extend(f"{v}" for k, v in sorted(self.attributes.items()) if v)
        return " | ".join(parts)

    def lexical_text(self) -> str:
        """The text BM25 indexes: everything a shopper's words might match."""
        attrs = " ".join(f"{k} {v}" for k, v in sorted(self.attributes.items()))
        return " ".join([self.title, self.product_class, self.category, self.description, attrs])
