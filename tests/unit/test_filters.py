"""Filters: validation messages name the field; masks come from row postings."""

from __future__ import annotations

import numpy as np
import pytest

from shared.data.catalog import Product
from shared.errors import InvalidArgument
from shared.search.filters import FilterPostings, Filters

pytestmark = pytest.mark.unit

KNOWN = {"colour", "material", "size", "style"}


def _postings() -> FilterPostings:
    fp = FilterPostings()
    products = [
        Product("a", "Grey sofa", product_class="Sofas", attributes={"colour": "Grey"}, price=500),
        Product("b", "Blue sofa", product_class="Sofas", attributes={"colour": "blue"}, price=900),
        Product("c", "Oak table", product_class="Coffee Tables", price=120,
                attributes={"colour": "brown", "material": "Oak"}),
        Product("d", "Grey rug", product_class="Area Rugs", attributes={"colour": "GREY"}, price=80),
    ]  # fmt: skip
    for row, p in enumerate(products):
        fp.add(row, p)
    return fp


def _rows(mask: np.ndarray | None) -> list[int]:
    assert mask is not None
    return np.flatnonzero(mask).tolist()


def test_empty_filter_gives_no_mask() -> None:
    assert _postings().mask(Filters(), 4) is None


def test_class_price_and_attribute_masks() -> None:
    fp = _postings()
    assert _rows(fp.mask(Filters(classes=["sofas"]), 4)) == [0, 1]
    assert _rows(fp.mask(Filters(classes=["Sofas", "Area Rugs"]), 4)) == [0, 1, 3]
    assert _rows(fp.mask(Filters(price_min=100, price_max=500), 4)) == [0, 2]
    assert _rows(fp.mask(Filters(price_min=500), 4)) == [0, 1]
    assert _rows(fp.mask(Filters(attributes={"colour": ["grey"]}), 4)) == [0, 3]
    assert _rows(fp.mask(Filters(attributes={"Colour": ["GREY", "Blue"]}), 4)) == [0, 1, 3]
    both = Filters(classes=["Sofas"], price_max=600, attributes={"colour": ["grey", "blue"]})
    assert _rows(fp.mask(both, 4)) == [0]
    assert _rows(fp.mask(Filters(classes=["Beds"]), 4)) == []


def test_remove_updates_postings() -> None:
    fp = _postings()
    fp.remove(2, Product("c", "Oak table", product_class="Coffee Tables", price=120,
                         attributes={"colour": "brown", "material": "Oak"}))  # fmt: skip
    assert fp.attribute_names() == {"colour"}
    assert "Coffee Tables" not in fp.class_counts()
    assert _rows(fp.mask(Filters(price_max=200), 4)) == [3]
    assert fp.class_counts() == {"Sofas": 2, "Area Rugs": 1}


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        (
            Filters(attributes={"shape": ["round"]}),
            "filters.attributes: unknown attribute 'shape' (known: colour, material, size, style)",
        ),
        (Filters(price_min=-1), "filters.price_min: must be >= 0"),
        (Filters(price_max=float("nan")), "filters.price_max: must be finite"),
        (Filters(price_min=10, price_max=5), "filters.price_max: must be >= price_min"),
        (Filters(classes=[""]), "filters.classes[0]: must be a non-empty class name"),
        (Filters(attributes={"colour": []}), "filters.attributes['colour']: must list"),
    ],
)
def test_validate_names_the_field(filters: Filters, message: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        filters.validate(KNOWN)
    assert err.value.message.startswith(message)


def test_valid_filters_pass() -> None:
    Filters(classes=["Sofas"], price_min=0, price_max=0, attributes={"Colour": ["x"]}).validate(
        KNOWN
    )


def test_british_and_american_spellings_match_each_other_in_names_and_values() -> None:
    fp = _postings()  # the catalog says "colour" and "Grey"
    for name, value in [
        ("color", "gray"),
        ("Color", "Gray"),
        ("colour", "gray"),
        ("color", "grey"),
    ]:
        assert _rows(fp.mask(Filters(attributes={name: [value]}), 4)) == [0, 3], (name, value)
    american = FilterPostings()  # and the other way round
    american.add(0, Product("e", "Gray rug", attributes={"color": "Gray"}))
    american.add(
        1, Product("f", "Rug", attributes={"color": "Multi-Color", "material": "Aluminum"})
    )
    assert _rows(american.mask(Filters(attributes={"colour": ["grey"]}), 2)) == [0]
    assert _rows(american.mask(Filters(attributes={"colour": ["multi-colour"]}), 2)) == [1]
    assert _rows(american.mask(Filters(attributes={"material": ["Aluminium"]}), 2)) == [1]
    # Two spellings of one attribute in one request are one attribute: either value.
    both = Filters(attributes={"colour": ["blue"], "color": ["grey"]})
    assert _rows(fp.mask(both, 4)) == [0, 1, 3]
    # Folding is for matching only: other words still differ, and the catalog's names
    # and values are reported as they are.
    assert _rows(fp.mask(Filters(attributes={"color": ["greyish"]}), 4)) == []
    assert fp.attribute_names() == {"colour", "material"}
    assert set(fp.attribute_values()["colour"]) == {"grey", "blue", "brown"}


def test_the_other_spelling_of_a_known_attribute_is_valid() -> None:
    Filters(attributes={"color": ["grey"]}).validate(KNOWN)
    Filters(attributes={"Color": ["grey"]}).validate({"Colour"})


@pytest.mark.parametrize(
    ("name", "suggestion"), [("colr", "colour"), ("matrial", "material"), ("sizes", "size")]
)
def test_an_unknown_attribute_suggests_the_closest_known_one(name: str, suggestion: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        Filters(attributes={name: ["x"]}).validate(KNOWN)
    assert err.value.message == (
        f"filters.attributes: unknown attribute {name!r} (did you mean {suggestion!r}? "
        "known: colour, material, size, style)"
    )
