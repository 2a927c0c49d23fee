"""The lexical analyzer: one function for documents and queries."""

from __future__ import annotations

import pytest

from shared.search.text import analyze, stem

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "terms"),
    [
        ("84'' Sofa", ["84", "inch", "sofa"]),
        ('84" sofa', ["84", "inch", "sofa"]),
        ("84 inches sofa", ["84", "inch", "sofa"]),
        ("84in sofa", ["84", "inch", "sofa"]),
        ("84\u2033 sofa", ["84", "inch", "sofa"]),
        ("84\u201d sofa", ["84", "inch", "sofa"]),
        ("6\u2032 rug", ["6", "ft", "rug"]),
        ("Kid's 3-Seat Sofas", ["kid", "3", "seat", "sofa"]),
        ("blk 18x18 seat cushions", ["blk", "18", "18", "seat", "cushion"]),
        ("rug 5' x 8'", ["rug", "5", "ft", "8", "ft"]),
        ("Wall Décor", ["wall", "decor"]),
        ('2.5" thick mattress', ["2.5", "inch", "thick", "mattress"]),
        ("Sofa with the Ottoman", ["sofa", "ottoman"]),
        ("3 in 1 crib", ["3", "1", "crib"]),
    ],
)
def test_analyze(text: str, terms: list[str]) -> None:
    assert analyze(text) == terms


@pytest.mark.parametrize(
    ("word", "stemmed"),
    [
        ("chairs", "chair"),
        ("benches", "bench"),
        ("boxes", "box"),
        ("accessories", "accessory"),
        ("glass", "glass"),
        ("cactus", "cactus"),
        ("shoes", "shoe"),
        ("tvs", "tv"),
        ("100s", "100s"),
    ],
)
def test_stem(word: str, stemmed: str) -> None:
    assert stem(word) == stemmed


def test_query_and_document_meet() -> None:
    assert set(analyze("grey sofas 84in")) <= set(analyze("Grey 84'' Sofa, velvet"))
