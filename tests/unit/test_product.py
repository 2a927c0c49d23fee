"""Product.validation_error: the first invalid field, named, as the catalog reports it."""

from __future__ import annotations

import pytest

from shared.data.catalog import MAX_PRODUCT_ID_LENGTH, Product

pytestmark = pytest.mark.unit


def test_a_valid_product_has_no_error() -> None:
    assert (
        Product("p1", "Grey sofa", price=10, rating=4.5, review_count=3).validation_error() is None
    )
    assert Product(" p1 ", "Sofa", rating=0).validation_error() is None


@pytest.mark.parametrize(
    ("product", "error"),
    [
        (Product(" ", "Sofa"), "product_id: must be non-empty"),
        (Product(7, "Sofa"), "product_id: must be non-empty"),  # type: ignore[arg-type]
        (
            Product("x" * (MAX_PRODUCT_ID_LENGTH + 1), "Sofa"),
            f"product_id: must be at most {MAX_PRODUCT_ID_LENGTH} characters",
        ),
        (Product("p", ""), "title: must be non-empty"),
        (Product("p", "Sofa", price="9"), "price: must be a number (got '9')"),  # type: ignore[arg-type]
        (Product("p", "Sofa", rating=True), "rating: must be a number (got True)"),
        (Product("p", "Sofa", price=float("inf")), "price: must be finite (got inf)"),
        (Product("p", "Sofa", price=-1), "price: must be >= 0 (got -1)"),
        (Product("p", "Sofa", rating=5.5), "rating: must be between 0 and 5 (got 5.5)"),
        (Product("p", "Sofa", review_count=-2), "review_count: must be an integer >= 0 (got -2)"),
        (Product("p", "Sofa", attributes=[]), "attributes: must be a mapping of name to value"),  # type: ignore[arg-type]
        # The first invalid field is the one reported.
        (Product("", "", price=-1), "product_id: must be non-empty"),
    ],
)
def test_the_first_invalid_field_is_named(product: Product, error: str) -> None:
    assert product.validation_error() == error
