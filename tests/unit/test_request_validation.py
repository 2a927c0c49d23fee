"""The request checks every service shares (shared/contracts/common.py): queries and versions."""

from __future__ import annotations

import pytest

from shared.contracts.common import validate_query, validate_version
from shared.errors import InvalidArgument
from shared.models.versions import ascii_digits

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


# Digits str.isdigit accepts that are not ASCII: superscripts (int() refuses them), and
# Arabic-Indic and fullwidth digits (int() reads them as numbers spelt like no version).
NOT_ASCII_DIGITS = ["²", "1²", "٣", "３", "①"]


@pytest.mark.parametrize("version", ["1", "2", "42", "9" * 19, " 2 "])
def test_a_version_of_ascii_digits_passes(version: str) -> None:
    assert validate_version(version, "model_version") == version.strip()
    assert validate_version(version, "text_encoder_version", required=True) == version.strip()


@pytest.mark.parametrize("version", [*NOT_ASCII_DIGITS, "v2", "0", "-1", "1.5", "9" * 20])
def test_a_version_that_is_not_a_positive_ascii_number_is_refused_naming_the_field(
    version: str,
) -> None:
    with pytest.raises(InvalidArgument, match=r"^model_version: must be empty or a positive"):
        validate_version(version, "model_version")
    with pytest.raises(InvalidArgument, match=r"^text_encoder_version: must be a positive"):
        validate_version(version, "text_encoder_version", required=True)


@pytest.mark.parametrize("version", ["", "   "])
def test_an_empty_version_means_the_serving_one_unless_required(version: str) -> None:
    assert validate_version(version, "model_version") == ""
    with pytest.raises(InvalidArgument, match=r"^text_encoder_version: required"):
        validate_version(version, "text_encoder_version", required=True)


@pytest.mark.parametrize(("text", "expected"), [("0", True), ("0123456789", True), ("", False)])
def test_ascii_digits_accepts_ascii_digits_only(text: str, expected: bool) -> None:
    assert ascii_digits(text) is expected
    for other in NOT_ASCII_DIGITS:
        assert not ascii_digits(text + other)
