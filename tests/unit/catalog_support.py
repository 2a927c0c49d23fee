"""Helpers the catalog tests share: products of four classes and unit vectors."""

from __future__ import annotations

import numpy as np

from shared.data.catalog import Product

DIM = 384
CLASSES = ["Sofas", "Accent Chairs", "Area Rugs", "Coffee Tables"]
COLOURS = ["grey", "blue", "green", "white"]
MATERIALS = ["velvet", "oak", "wool", "leather"]


def unit_vectors(n: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def make_products(n: int, start: int = 0) -> list[Product]:
    out = []
    for i in range(start, start + n):
        cls = CLASSES[i % len(CLASSES)]
        colour, material = COLOURS[(i // 4) % 4], MATERIALS[(i // 16) % 4]
        out.append(
            Product(
                product_id=f"p{i}",
                title=f"{colour} {material} {cls.lower()} model {i}",
                product_class=cls,
                attributes={"colour": colour, "material": material},
                price=float(10 + i),
                rating=float(i % 6),
            )
        )
    return out


def ids(result: object) -> list[str]:
    return [c.product.product_id for c in result.candidates]  # type: ignore[attr-defined]
