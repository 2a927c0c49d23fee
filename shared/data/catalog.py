"""The catalog's product record, shared by the data loaders, the index and the services."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

# The longest product id a catalog stores (after stripping surrounding blanks).
MAX_PRODUCT_ID_LENGTH = 128


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

    def validation_error(self) -> str | None:
        """The first invalid field as ``"field: reason"``; None when the product is valid.

        Checks the fields' types and ranges (a product built from outside data may hold
        anything): a non-blank id of at most ``MAX_PRODUCT_ID_LENGTH`` characters, a non-blank
        title, finite numbers with price >= 0 and rating in [0, 5], a count >= 0 and a
        mapping of attributes.
        """
        if not isinstance(self.product_id, str) or not self.product_id.strip():
            return "product_id: must be non-empty"
        if len(self.product_id.strip()) > MAX_PRODUCT_ID_LENGTH:
            return f"product_id: must be at most {MAX_PRODUCT_ID_LENGTH} characters"
        if not isinstance(self.title, str) or not self.title.strip():
            return "title: must be non-empty"
        for name in ("price", "rating"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                return f"{name}: must be a number (got {value!r})"
            if not math.isfinite(value):
                return f"{name}: must be finite (got {value})"
        if self.price < 0:
            return f"price: must be >= 0 (got {self.price})"
        if not 0 <= self.rating <= 5:
            return f"rating: must be between 0 and 5 (got {self.rating})"
        if not isinstance(self.review_count, int) or self.review_count < 0:
            return f"review_count: must be an integer >= 0 (got {self.review_count!r})"
        if not isinstance(self.attributes, dict):
            return "attributes: must be a mapping of name to value"
        return None
