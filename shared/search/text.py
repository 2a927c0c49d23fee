"""The lexical analyzer shared by BM25 documents and queries.

Documents and queries must go through the same function, or a query word can never meet
its document form. The rules are deliberately light (no dictionary stemmer): product
titles are short, full of names and numbers, and over-stemming merges unrelated words.

What it does, in order:

* Unicode NFKD, accents dropped ("Décor" -> "decor"), case-folded.
* Measurements: ``84''``, ``84"``, ``84 in.``, ``84in`` and ``84 inches`` all become
  ``84 inch``; ``6'`` / ``6ft`` / ``6 feet`` become ``6 ft``; ``18x18`` becomes ``18 18``.
* Possessive and elided apostrophes are removed ("kid's" -> "kids" -> "kid").
* Tokens are runs of letters and digits; a decimal number ("2.5") stays one token.
  Hyphenated words split ("3-seat" -> "3 seat", "mid-century" -> "mid century").
* A small English stopword list is removed (never numbers).
* Light plural stemming: "ies" -> "y", "ches/shes/xes/sses/zes" -> drop "es", else a
  trailing "s" is dropped (not after "s", "u" or "i": "glass", "cactus", "iris").
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

# fmt: off
STOPWORDS: frozenset[str] = frozenset({
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "from", "has", "have",
    "i", "in", "into", "is", "it", "its", "me", "my", "of", "on", "or", "our", "so", "that",
    "the", "their", "these", "this", "those", "to", "was", "we", "were", "will", "with",
    "x", "you", "your",
})
# fmt: on

# Inch marks: two apostrophes, a double quote, typographic quotes, or double primes (NFKD
# turns U+2033 into two U+2032).
_INCH_MARK = re.compile(r"(\d)\s*(?:''|\"|\u2032\u2032|\u2033|\u201d|\u201c)")
# Foot marks: one apostrophe or prime right after a number (not followed by another).
_FOOT_MARK = re.compile(r"(\d)\s*(?:'|\u2032|\u2019)(?!['\u2032])")
# Unit words glued to or following a number.
_INCH_WORD = re.compile(r"(\d)\s*(?:inches|inch|in\.|in(?![a-z0-9])(?!\s*\d))(?![a-z0-9])")
_FOOT_WORD = re.compile(r"(\d)\s*(?:feet|foot|ft\.?)(?![a-z0-9])")
_DIMENSION = re.compile(r"(\d)\s*x\s*(?=\d)")
_APOSTROPHE = re.compile(r"(?<=[a-z])['\u2019](?=[a-z])")
_DIGIT = re.compile(r"\d")
_TOKEN = re.compile(r"\d+\.\d+|[a-z0-9]+")


def normalize(text: str) -> str:
    """Case-fold and strip accents so "Décor" and "decor" are one word."""
    if text.isascii():  # the common case; skips the per-character pass below
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return stripped.casefold()


@lru_cache(maxsize=65536)
def stem(token: str) -> str:
    """Reduce a plural to its singular form (light, rule-based; numbers untouched)."""
    if token[0].isdigit() or len(token) < 3:
        return token
    if token.endswith("ies") and len(token) > 4:
        return token[:-3] + "y"
    if token.endswith(("ches", "shes", "xes", "sses", "zes")):
        return token[:-2]
    if token.endswith("s") and not token.endswith(("ss", "us", "is")):
        return token[:-1]
    return token


def analyze(text: str) -> list[str]:
    """Turn a document or a query into index terms (order kept, duplicates kept)."""
    if not text:
        return []
    s = normalize(text)
    if _DIGIT.search(s):  # measurement rules only matter next to a number
        s = _INCH_MARK.sub(r"\1 inch ", s)
        s = _FOOT_MARK.sub(r"\1 ft ", s)
        s = _INCH_WORD.sub(r"\1 inch ", s)
        s = _FOOT_WORD.sub(r"\1 ft ", s)
        s = _DIMENSION.sub(r"\1 ", s)
    if "'" in s or "\u2019" in s:
        s = _APOSTROPHE.sub("", s)
    return [stem(t) for t in _TOKEN.findall(s) if t not in STOPWORDS]
