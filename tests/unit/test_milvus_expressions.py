"""What the milvus backend sends Milvus, without Milvus: the filter expression (the same
semantics as ``FilterPostings.mask``, hashes instead of strings), a product's scalar fields,
and the text field cut to Milvus's limit at a term boundary."""

from __future__ import annotations

import re

import pytest

from shared.search.filters import Filters
from shared.search.milvus import (
    MAX_TEXT_BYTES,
    attribute_key,
    class_key,
    filter_expression,
    lexical_field,
    product_attribute_keys,
)
from tests.unit.catalog_support import make_products

pytestmark = pytest.mark.unit


def test_no_filter_is_an_empty_expression() -> None:
    assert filter_expression(Filters()) == ""


def test_classes_or_attributes_and_prices_inclusive() -> None:
    expression = filter_expression(
        Filters(
            classes=["Sofas", " sofas ", "Area Rugs"],
            price_min=10,
            price_max=99.5,
            attributes={"colour": ["Grey", "blue"], "Color": ["gray"], "material": ["Oak"]},
        )
    )
    parts = expression.split(" and ")
    # One class list (case and spaces folded), one clause per attribute name (both
    # spellings of colour are one), then the bounds.
    assert parts[0] == f"cls in {sorted({class_key('Sofas'), class_key('Area Rugs')})}"
    colour = sorted({attribute_key("colour", "grey"), attribute_key("colour", "blue")})
    assert f"array_contains_any(attrs, {colour})" in parts
    assert f"array_contains_any(attrs, {[attribute_key('material', 'oak')]})" in parts
    assert parts[-2:] == ["price >= 10.0", "price <= 99.5"]
    assert len(parts) == 5


def test_spellings_and_case_fold_to_one_key() -> None:
    assert attribute_key("Colour", "Grey") == attribute_key("color", "gray")
    assert attribute_key("colour", "grey") != attribute_key("colour", "green")
    assert attribute_key("colour", "grey") != attribute_key("material", "grey")
    assert class_key(" Area  Rugs") == class_key("area rugs") != 0
    assert class_key("") == 0


def test_only_integers_and_numbers_reach_the_expression() -> None:
    hostile = ['"', "\\", "') or true or ('", "x in [1]", "\u0000\u202e", "💩"]
    expression = filter_expression(Filters(classes=hostile, attributes={"colour": hostile}))
    assert re.fullmatch(
        r"[a-z_ ]+(\[[-0-9, ]+\]|\(attrs, \[[-0-9, ]+\]\))( and [a-z_]+.*)?", expression
    )
    assert re.fullmatch(r"[-0-9a-z_ ,\[\]()]+", expression)


def test_a_products_fields_match_what_its_filters_ask() -> None:
    product = make_products(1)[0]
    keys = product_attribute_keys(product)
    for name, value in product.attributes.items():
        assert attribute_key(name.upper(), f"  {value.upper()} ") in keys


def test_the_text_field_is_cut_at_a_term_boundary() -> None:
    terms = ["lamp"] * 20_000  # 99,999 bytes joined
    text = lexical_field(terms)
    assert len(text.encode()) <= MAX_TEXT_BYTES
    assert set(text.split(" ")) == {"lamp"}
    assert lexical_field(["grey", "sofa"]) == "grey sofa"
