"""Query augmentation and pseudo-queries made from product titles.

Shoppers type short, noisy queries: a synonym the titles never use ("couch" for
"sofa"), a dropped word, a typo. :func:`augment_query` imitates that on training
queries; :class:`PseudoQueryMaker` turns product titles into extra (query, product)
examples by dropping brand and product-line words and keeping the product noun with,
sometimes, an attribute word.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Sequence

from shared.data.catalog import Product

# Small furniture / decor synonym table: each word -> words shoppers use for it.
SYNONYMS: dict[str, tuple[str, ...]] = {
    "sofa": ("couch", "settee", "loveseat"),
    "couch": ("sofa", "settee"),
    "settee": ("sofa", "couch"),
    "rug": ("carpet", "mat"),
    "carpet": ("rug",),
    "armchair": ("accent chair", "club chair"),
    "dresser": ("chest of drawers",),
    "bookcase": ("bookshelf", "shelves"),
    "bookshelf": ("bookcase",),
    "nightstand": ("bedside table", "night table"),
    "lamp": ("light",),
    "light": ("lamp", "fixture"),
    "chandelier": ("ceiling light", "pendant"),
    "faucet": ("tap",),
    "tap": ("faucet",),
    "curtain": ("drape", "panel"),
    "curtains": ("drapes",),
    "drapes": ("curtains",),
    "grey": ("gray",),
    "gray": ("grey",),
    "wooden": ("wood",),
    "wood": ("wooden",),
    "stool": ("barstool",),
    "barstool": ("bar stool",),
    "comforter": ("duvet", "quilt"),
    "duvet": ("comforter",),
    "mirror": ("looking glass",),
    "wardrobe": ("armoire", "closet"),
    "armoire": ("wardrobe",),
    "cabinet": ("cupboard",),
    "cupboard": ("cabinet",),
    "table": ("desk",),
    "outdoor": ("patio",),
    "patio": ("outdoor", "garden"),
    "kids": ("children", "childrens"),
    "small": ("little", "mini"),
    "large": ("big", "oversized"),
    "modern": ("contemporary",),
    "rustic": ("farmhouse",),
}

# Title words that never say what the product is.
_TITLE_STOPWORDS = frozenset({"with", "and", "of", "set", "pack", "pair", "the", "for", "in"})
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*|\d+(?:\.\d+)?")


def synonym_replace(words: Sequence[str], rng: random.Random) -> list[str]:
    """Replace one word that has a synonym (if any) by one of its synonyms."""
    candidates = [i for i, w in enumerate(words) if w.lower() in SYNONYMS]
    if not candidates:
        return list(words)
    i = rng.choice(candidates)
    out = list(words)
    out[i] = rng.choice(SYNONYMS[words[i].lower()])
    return out


def token_dropout(words: Sequence[str], rng: random.Random) -> list[str]:
    """Drop one word, never the last (usually the product noun) nor a one-word query."""
    if len(words) < 2:
        return list(words)
    i = rng.randrange(len(words) - 1)
    return [w for j, w in enumerate(words) if j != i]


def typo(words: Sequence[str], rng: random.Random) -> list[str]:
    """One keyboard slip in one word of 4+ letters: deletion, swap or doubled letter."""
    candidates = [i for i, w in enumerate(words) if len(w) >= 4]
    if not candidates:
        return list(words)
    i = rng.choice(candidates)
    word = words[i]
    j = rng.randrange(1, len(word) - 1)
    kind = rng.random()
    if kind < 0.4:
        word = word[:j] + word[j + 1 :]
    elif kind < 0.7:
        word = word[:j] + word[j + 1] + word[j] + word[j + 2 :]
    else:
        word = word[:j] + word[j] + word[j:]
    out = list(words)
    out[i] = word
    return out


_AUGMENTATIONS = (synonym_replace, token_dropout, typo)


def augment_query(text: str, rng: random.Random, prob: float) -> str:
    """With probability ``prob``, ``text`` with one augmentation (synonym, dropout, typo)."""
    if prob <= 0.0 or rng.random() >= prob:
        return text
    words = text.split()
    if not words:
        return text
    return " ".join(rng.choice(_AUGMENTATIONS)(words, rng)) or text


class PseudoQueryMaker:
    """Makes shopper-like queries from product titles.

    A title word is kept only if it is common across the catalog's titles (at least
    ``min_share`` of them, and ``min_count`` times): brand and product-line names are
    rare, so they drop out, while product nouns and attribute values stay.
    """

    def __init__(
        self, products: Sequence[Product], min_share: float = 0.001, min_count: int = 3
    ) -> None:
        counts: Counter[str] = Counter()
        for product in products:
            counts.update({w.lower() for w in _WORD.findall(product.title)})
        threshold = max(min_count, int(min_share * len(products)))
        self._common = frozenset(w for w, c in counts.items() if c >= threshold)

    def make(self, product: Product, rng: random.Random) -> str:
        """A 1-4 word query for ``product``: its noun, sometimes with attribute words."""
        words = [w.lower() for w in _WORD.findall(product.title)]
        brand = {w.lower() for w in _WORD.findall(product.attributes.get("brand", ""))}
        # The noun phrase ends the title before any "with ..."/"set of ..." suffix.
        cut = next((i for i, w in enumerate(words) if w in _TITLE_STOPWORDS), len(words))
        head = [w for w in words[:cut] if w in self._common and w not in brand]
        if not head:
            fallback = product.product_class.lower() or product.title.lower()
            return " ".join(fallback.split()[:4])
        n_noun = min(len(head), rng.choice((1, 2, 2)))
        noun, attributes = head[-n_noun:], head[:-n_noun]
        n_attributes = min(len(attributes), rng.choices((0, 1, 2), weights=(0.5, 0.35, 0.15))[0])
        kept = sorted(rng.sample(range(len(attributes)), n_attributes))
        return " ".join([*(attributes[i] for i in kept), *noun][-4:])
