"""Search filters and the row postings that turn them into a boolean mask quickly.

A filter is applied before ranking (inside BM25 and the dense search), so both sources
return their best *matching* products instead of losing hits to post-filtering. The mask
is built from per-class and per-attribute-value row sets kept up to date on every upsert,
plus one vectorised price comparison, so no filter walks the products in Python.

Attribute names and values in a filter match the catalog's after folding British and
American spellings (``colour=grey`` finds ``color: Gray`` and the reverse); the catalog's
own names and values are kept and reported as they are.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from shared.data.catalog import Product
from shared.errors import InvalidArgument


def normalize_value(value: str) -> str:
    """Attribute values and class names compare case-insensitively and trimmed."""
    return " ".join(str(value).split()).casefold()


# British spellings a furniture and home store's shoppers (or catalog) may use, and the
# American ones they fold to, word by word, for matching filters only.
SPELLINGS = {
    "aluminium": "aluminum",
    "armour": "armor",
    "centre": "center",
    "centres": "centers",
    "colour": "color",
    "coloured": "colored",
    "colours": "colors",
    "cosy": "cozy",
    "favourite": "favorite",
    "fibre": "fiber",
    "fibreglass": "fiberglass",
    "grey": "gray",
    "greys": "grays",
    "jewellery": "jewelry",
    "litre": "liter",
    "litres": "liters",
    "lustre": "luster",
    "metre": "meter",
    "metres": "meters",
    "microfibre": "microfiber",
    "mould": "mold",
    "moulded": "molded",
    "multicolour": "multicolor",
    "multicoloured": "multicolored",
    "organiser": "organizer",
    "organisers": "organizers",
    "theatre": "theater",
    "woollen": "woolen",
}
_WORD = re.compile(r"[^\W\d_]+")


def fold_spelling(value: str) -> str:
    """``normalize_value`` with British spellings folded to American ones, word by word
    (``Multi-Colour`` -> ``multi-color``): the key a filter's names and values match on."""
    return _WORD.sub(lambda m: SPELLINGS.get(m.group(0), m.group(0)), normalize_value(value))


@dataclass(slots=True)
class Filters:
    """What a shopper restricted the search to; empty fields do not restrict.

    ``classes``: the product must be of one of these classes (case-insensitive).
    ``price_min`` / ``price_max``: inclusive bounds in the store's currency.
    ``attributes``: for every named attribute, the product's value must be one of the
    listed values (case-insensitive); different attributes must all match.
    """

    classes: list[str] = field(default_factory=list)
    price_min: float | None = None
    price_max: float | None = None
    attributes: dict[str, list[str]] = field(default_factory=dict)

    def is_empty(self) -> bool:
        """True when nothing is restricted (the search can skip building a mask)."""
        return (
            not self.classes
            and self.price_min is None
            and self.price_max is None
            and not self.attributes
        )

    def validate(self, known_attributes: set[str]) -> None:
        """Raise ``InvalidArgument`` naming the first offending field."""
        for i, name in enumerate(self.classes):
            if not isinstance(name, str) or not name.strip():
                raise InvalidArgument(f"filters.classes[{i}]: must be a non-empty class name")
        for bound in ("price_min", "price_max"):
            value = getattr(self, bound)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidArgument(f"filters.{bound}: must be a number (got {value!r})")
            if not math.isfinite(value):
                raise InvalidArgument(f"filters.{bound}: must be finite (got {value})")
            if value < 0:
                raise InvalidArgument(f"filters.{bound}: must be >= 0 (got {value})")
        if (
            self.price_min is not None
            and self.price_max is not None
            and self.price_max < self.price_min
        ):
            raise InvalidArgument(
                f"filters.price_max: must be >= price_min "
                f"(got price_min={self.price_min}, price_max={self.price_max})"
            )
        known = (
            {fold_spelling(a): a.casefold() for a in known_attributes} if self.attributes else {}
        )
        for name, values in self.attributes.items():
            if fold_spelling(name) not in known:
                listing = ", ".join(sorted({a.casefold() for a in known_attributes})) or "none"
                close = difflib.get_close_matches(fold_spelling(name), known, n=1)
                hint = f"did you mean {known[close[0]]!r}? " if close else ""
                raise InvalidArgument(
                    f"filters.attributes: unknown attribute {name!r} ({hint}known: {listing})"
                )
            if isinstance(values, str) or not values:
                raise InvalidArgument(f"filters.attributes[{name!r}]: must list at least one value")
            for j, value in enumerate(values):
                if not isinstance(value, str) or not value.strip():
                    raise InvalidArgument(
                        f"filters.attributes[{name!r}][{j}]: must be a non-empty string"
                    )


def _fold_key(name: str, value: str) -> tuple[str, str]:
    return fold_spelling(name), fold_spelling(value)


class _RowSet:
    """A set of rows with a lazily rebuilt sorted array (rebuilt only after a change)."""

    __slots__ = ("_array", "rows")

    def __init__(self) -> None:
        self.rows: set[int] = set()
        self._array: np.ndarray | None = None

    def add(self, row: int) -> None:
        self.rows.add(row)
        self._array = None

    def discard(self, row: int) -> None:
        self.rows.discard(row)
        self._array = None

    def array(self) -> np.ndarray:
        arr = self._array
        if arr is None:
            arr = np.fromiter(self.rows, dtype=np.int64, count=len(self.rows))
            arr.sort()
            self._array = arr
        return arr


class FilterPostings:
    """Per-class and per-(attribute, value) row sets plus a price column, kept incrementally.

    The caller (the catalog index) serialises writers and excludes them from readers.
    """

    def __init__(self) -> None:
        self._classes: dict[str, _RowSet] = {}
        self._class_names: dict[str, str] = {}  # normalised -> name as first seen
        self._attributes: dict[tuple[str, str], _RowSet] = {}
        # (name, value) spelling-folded -> the keys of ``_attributes`` it stands for.
        self._folded: dict[tuple[str, str], set[tuple[str, str]]] = {}
        self._attribute_counts: dict[str, int] = {}
        self._price = np.full(0, np.nan, dtype=np.float64)

    def _ensure(self, row: int) -> None:
        if row < len(self._price):
            return
        cap = max(row + 1, 2 * len(self._price), 1024)
        price = np.full(cap, np.nan, dtype=np.float64)
        price[: len(self._price)] = self._price
        self._price = price

    def add(self, row: int, product: Product) -> None:
        """Record ``product`` at ``row`` (call ``remove`` first for the old version)."""
        self._ensure(row)
        if product.product_class:
            key = normalize_value(product.product_class)
            self._class_names.setdefault(key, product.product_class)
            self._classes.setdefault(key, _RowSet()).add(row)
        for name, value in product.attributes.items():
            if value is None or str(value).strip() == "":
                continue
            name = name.casefold()
            akey = (name, normalize_value(value))
            if akey not in self._attributes:
                self._attributes[akey] = _RowSet()
                self._folded.setdefault(_fold_key(*akey), set()).add(akey)
            self._attributes[akey].add(row)
            self._attribute_counts[name] = self._attribute_counts.get(name, 0) + 1
        self._price[row] = product.price

    def remove(self, row: int, product: Product) -> None:
        """Forget ``product`` at ``row`` (the version that was added)."""
        if product.product_class:
            key = normalize_value(product.product_class)
            rs = self._classes.get(key)
            if rs is not None:
                rs.discard(row)
                if not rs.rows:
                    del self._classes[key]
                    self._class_names.pop(key, None)
        for name, value in product.attributes.items():
            if value is None or str(value).strip() == "":
                continue
            name = name.casefold()
            akey = (name, normalize_value(value))
            rs = self._attributes.get(akey)
            if rs is not None:
                rs.discard(row)
                if not rs.rows:
                    del self._attributes[akey]
                    folded = self._folded.get(_fold_key(*akey), set())
                    folded.discard(akey)
                    if not folded:
                        self._folded.pop(_fold_key(*akey), None)
            left = self._attribute_counts.get(name, 0) - 1
            if left > 0:
                self._attribute_counts[name] = left
            else:
                self._attribute_counts.pop(name, None)
        if row < len(self._price):
            self._price[row] = np.nan

    def attribute_names(self) -> set[str]:
        """Attribute names held by at least one product."""
        return set(self._attribute_counts)

    def attribute_values(self) -> dict[str, dict[str, int]]:
        """Attribute name -> normalised value -> number of products holding it."""
        out: dict[str, dict[str, int]] = {}
        for (name, value), rs in self._attributes.items():
            if rs.rows:
                out.setdefault(name, {})[value] = len(rs.rows)
        return out

    def class_counts(self) -> dict[str, int]:
        """Class name -> number of products."""
        return {self._class_names[k]: len(rs.rows) for k, rs in self._classes.items()}

    def _union(self, sets: Iterable[_RowSet | None], n_rows: int) -> np.ndarray:
        m = np.zeros(n_rows, dtype=bool)
        for rs in sets:
            if rs is not None:
                rows = rs.array()
                m[rows[rows < n_rows]] = True
        return m

    def mask(self, filters: Filters, n_rows: int) -> np.ndarray | None:
        """Boolean mask over ``n_rows`` rows of products passing ``filters``; None if no filter.

        The caller ANDs it with its own "row is present" knowledge; removed rows are
        already absent from every set here and have a NaN price.
        """
        if filters.is_empty():
            return None
        mask: np.ndarray | None = None
        if filters.classes:
            mask = self._union(
                (self._classes.get(normalize_value(c)) for c in filters.classes), n_rows
            )
        # Values are OR-ed within an attribute (both spellings of its name are one), and
        # attributes AND-ed.
        wanted: dict[str, set[str]] = {}
        for name, values in filters.attributes.items():
            wanted.setdefault(fold_spelling(name), set()).update(fold_spelling(v) for v in values)
        for name, values in wanted.items():
            keys = (key for value in values for key in self._folded.get((name, value), ()))
            m = self._union((self._attributes.get(key) for key in keys), n_rows)
            mask = m if mask is None else mask & m
        if filters.price_min is not None or filters.price_max is not None:
            price = self._price[:n_rows]
            if len(price) < n_rows:  # pad locally: a reader must not mutate shared state
                price = np.concatenate((price, np.full(n_rows - len(price), np.nan)))
            with np.errstate(invalid="ignore"):
                m = ~np.isnan(price)
                if filters.price_min is not None:
                    m &= price >= filters.price_min
                if filters.price_max is not None:
                    m &= price <= filters.price_max
            mask = m if mask is None else mask & m
        return mask
