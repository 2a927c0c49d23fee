"""The request checks every service shares (shared/rpc/convert.py): queries and versions."""

from __future__ import annotations

import pytest

from shared.rpc.convert import validate_query
from shared.rpc.errors import InvalidArgument

pytestmark = pytest.mark.unit

# Characters a shopper cannot see: format (Cf) and control (Cc) characters.
INVISIBLE = {
    "zero-width space": "\u200b",
    "byte order mark": "\ufeff",
    "left-to-right mark": "\u200e",
    "right-to-left mark": "\u200f",
    "zero-width joiner": "\u200d",
    "word joiner": "\u2060",
    "soft hyphen": "\u00ad",
    "NUL": "\x00",
    "escape": "\x1b",
    "delete": "\x7f",
    "C1 control": "\x9b",
}


@pytest.mark.parametrize("query", ["", "   ", " \t\n "])
def test_an_empty_or_whitespace_query_is_refused_naming_the_field(query: str) -> None:
    with pytest.raises(InvalidArgument, match=r"^query: must not be empty"):
        validate_query(query)


@pytest.mark.parametrize("name", INVISIBLE)
def test_a_query_of_invisible_characters_is_refused_as_empty(name: str) -> None:
    char = INVISIBLE[name]
    for query in (char, char * 3, f" {char}\t{char} "):
        with pytest.raises(InvalidArgument, match=r"^query: must not be empty"):
            validate_query(query)


def test_a_query_of_every_invisible_character_together_is_refused() -> None:
    with pytest.raises(InvalidArgument, match=r"^my_query: must not be empty"):
        validate_query("".join(INVISIBLE.values()), field="my_query")


def test_invisible_characters_inside_a_query_are_dropped_or_become_spaces() -> None:
    # Format characters vanish (they never separate words); control characters separate.
    assert validate_query("sofa\u200b") == "sofa"
    assert validate_query("\ufeffgrey sofa") == "grey sofa"
    assert validate_query("so\u00adfa") == "sofa"
    assert validate_query("grey\x00sofa") == "grey sofa"
    assert validate_query("\u200egrey\u200f \x1bsofa\x7f") == "grey  sofa"


def test_an_ordinary_query_is_returned_stripped_and_unchanged() -> None:
    assert validate_query('  Mid-Century Walnut Sideboard 84" ') == (
        'Mid-Century Walnut Sideboard 84"'
    )
    assert validate_query("Décor café 咖啡桌") == "Décor café 咖啡桌"


def test_a_query_over_the_limit_is_refused_naming_the_field() -> None:
    validate_query("x" * 512)
    with pytest.raises(InvalidArgument, match=r"^query: 513 characters exceeds the limit of 512"):
        validate_query("x" * 513)
