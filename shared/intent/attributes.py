"""Attribute detection: which catalog attribute values a query names ("grey velvet couch"
-> colour=grey, material=velvet).

The vocabulary is the catalog's own attribute values, analysed with the same analyzer as
BM25 (so plurals and case do not matter). A query is scanned for the longest value
phrases first (up to four tokens), without overlaps; a phrase that is a value of several
attributes goes to the attribute where it is most frequent.
"""

from __future__ import annotations

from collections.abc import Mapping

from shared.search.text import analyze

MAX_PHRASE_TOKENS = 4


class AttributeMatcher:
    def __init__(self, values: Mapping[str, Mapping[str, int]]) -> None:
        best: dict[tuple[str, ...], tuple[int, str, str]] = {}
        for name, counts in values.items():
            for value, count in counts.items():
                tokens = tuple(analyze(value))
                if not tokens or len(tokens) > MAX_PHRASE_TOKENS:
                    continue
                if tokens not in best or count > best[tokens][0]:
                    best[tokens] = (count, name, value)
        self._phrases = {tokens: (name, value) for tokens, (_, name, value) in best.items()}

    def __len__(self) -> int:
        return len(self._phrases)

    def match(self, query: str) -> dict[str, str]:
        """Attribute name -> value named by the query (the first mention wins)."""
        tokens = analyze(query)
        found: dict[str, str] = {}
        i = 0
        while i < len(tokens):
            for n in range(min(MAX_PHRASE_TOKENS, len(tokens) - i), 0, -1):
                hit = self._phrases.get(tuple(tokens[i : i + n]))
                if hit is not None:
                    found.setdefault(hit[0], hit[1])
                    i += n
                    break
            else:
                i += 1
        return found
