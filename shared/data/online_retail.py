"""Loader for UCI Online Retail: a UK gift shop's real invoices, as a catalog and purchases.

The data comes as parquet files in two column namings: *Online Retail II*
(``Invoice, StockCode, Description, Quantity, InvoiceDate, Price, Customer ID, Country``,
the date as text) and *Online Retail* (``InvoiceNo, ..., UnitPrice, CustomerID, ...``, the
date as a timestamp and the customer as a float). ``load_online_retail`` reads every
``*.parquet`` file of a folder, whichever naming it uses, and cleans the lines by these rules:

- Overlap: files may hold the same invoices (the two UCI releases share 2010-12-01..09).
  An invoice is read from one file only, the newest one holding it (files ordered by their
  latest invoice date), so the lines of an invoice present in both releases come from the
  later release. Deduplicating by invoice, not by line, keeps genuine repeated lines.
- Products: a real product is a stock code (stripped, upper-case) that starts with five
  digits ("85123A", "22423"). Every other code is dropped: postage (POST, DOT), manual
  entries (M), carriage (C2, C3), discounts (D), samples (S), BANK CHARGES, AMAZONFEE,
  ADJUST, bad debt (B), TEST..., PADS, the DCGS... marketplace codes and gift vouchers
  (gift_0001_...).
- Cancellations: an invoice starting with "C" (negative quantity) removes its units from
  the same customer's most recent purchase(s) of that product at or before the
  cancellation, newest first; a purchase whose quantity falls to 0 is dropped. What cannot
  be matched (a guest's cancellation, nothing bought before) is not counted as cancelled.
- Other lines with quantity <= 0 (stock adjustments) or price <= 0 are dropped, and so is a
  line of a "C" invoice whose quantity is not negative.
- Lines of the same product in one invoice are summed into one ``RetailLine`` whose unit
  price is their quantity-weighted mean.
- Times: ``InvoiceDate`` is UK local time; it is converted from Europe/London to aware UTC.
- Customers: a line without a customer is a guest checkout (``customer_id`` ""); an id
  reads as digits ("12345", never "12345.0").

Counts: ``cancelled_quantity`` is the units the cancellations removed from purchases;
``dropped_lines`` counts the input lines that are neither kept nor a matched cancellation:
non-products, price <= 0, quantity <= 0 adjustments, other lines of "C" invoices and
cancellation lines of which no unit could be matched. Purchases netted out by a
cancellation and the duplicates of the overlap are not in it.

The catalog (``Product``): product_id = the stock code; title = the most frequent
description of its purchase lines other than empty and "Unknown" (stripped, whitespace
collapsed, case kept; ties go to the one seen first; failing that, a description of any of
its lines, then the code); price = the median unit price of its purchase lines before
cancellations, rounded to 2 decimals; no description, class or category (the store has
none). ``first_sold`` is each product's first purchase (a later cancellation does not move
it).
"""

from __future__ import annotations

import math
import re
import statistics
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from shared.data.catalog import Product
from shared.errors import InvalidArgument

STORE_TIMEZONE = ZoneInfo("Europe/London")
# Canonical column -> the names it has in the two releases.
COLUMN_NAMES: dict[str, tuple[str, ...]] = {
    "invoice": ("Invoice", "InvoiceNo"),
    "stock_code": ("StockCode",),
    "description": ("Description",),
    "quantity": ("Quantity",),
    "invoice_date": ("InvoiceDate",),
    "unit_price": ("Price", "UnitPrice"),
    "customer_id": ("Customer ID", "CustomerID"),
    "country": ("Country",),
}
PRODUCT_CODE_PATTERN = r"^[0-9]{5}"
UNKNOWN_DESCRIPTION = "unknown"
CANCELLATION_PREFIX = "C"
# Text dates: ISO ("2009-12-01 07:45:00") or the original spreadsheet's "12/1/2010 8:26".
_TEXT_DATE_FORMATS = ("%m/%d/%Y %H:%M", "%m/%d/%Y %H:%M:%S")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class RetailLine:
    """One purchased product of one invoice, after cleaning.

    ``product_id`` is the stock code (stripped, upper-case); ``quantity`` > 0 sums the
    invoice's lines of the product; ``unit_price`` > 0; ``at`` is aware UTC;
    ``customer_id`` is "" for a guest checkout.
    """

    invoice: str
    product_id: str
    quantity: int
    unit_price: float
    at: datetime
    customer_id: str
    country: str


@dataclass(frozen=True)
class OnlineRetail:
    """The cleaned store: its catalog (sorted by id), its purchases (sorted by
    ``(at, invoice, product_id)``), the units cancellations removed, the input lines dropped
    and each product's first purchase time."""

    products: list[Product]
    lines: list[RetailLine]
    cancelled_quantity: int
    dropped_lines: int
    first_sold: dict[str, datetime] = field(default_factory=dict)


def is_product_code(stock_code: str) -> bool:
    """True for a real product's stock code (five leading digits), False for postage,
    fees, adjustments, samples and vouchers."""
    return re.match(PRODUCT_CODE_PATTERN, stock_code) is not None


def _micros(value: datetime) -> int:
    """A store time (naive: UK local; aware: as is) -> microseconds since the epoch, UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=STORE_TIMEZONE)
    return (value - _EPOCH) // timedelta(microseconds=1)


def _time_micros(value: Any, path: Path) -> int:
    if isinstance(value, datetime):
        return _micros(value)
    text = str(value or "").strip()
    try:
        return _micros(datetime.fromisoformat(text))
    except ValueError:
        pass
    for pattern in _TEXT_DATE_FORMATS:
        try:
            return _micros(datetime.strptime(text, pattern))
        except ValueError:
            continue
    raise InvalidArgument(f"{path}: InvoiceDate {text!r} is not a date")


def _customer_id(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return str(int(value))
    return str(value).strip().removesuffix(".0")


def _mapped(column: pa.ChunkedArray, convert: Callable[[Any], Any], kind: pa.DataType) -> Any:
    """``convert`` applied to every value of ``column``, computed once per distinct value."""
    distinct = pc.unique(column)
    converted = pa.array([convert(value) for value in distinct.to_pylist()], type=kind)
    return pc.take(converted, pc.index_in(column, value_set=distinct))


def _values(column: pa.ChunkedArray | pa.Array) -> list[Any]:
    """A column without nulls as a list of Python values (through numpy: faster than
    ``to_pylist``)."""
    return column.to_numpy(zero_copy_only=False).tolist()


def _code_text(column: pa.ChunkedArray) -> Any:
    """Identifiers as stripped upper-case strings ("" for a missing one)."""
    text = pc.cast(column, pa.string()) if not pa.types.is_string(column.type) else column
    return pc.utf8_upper(pc.utf8_trim_whitespace(pc.fill_null(text, "")))


def _column_names(path: Path) -> dict[str, str]:
    """Canonical column -> its name in ``path``; InvalidArgument naming the first missing one."""
    present = set(pq.read_schema(path).names)
    names = {}
    for canonical, candidates in COLUMN_NAMES.items():
        found = next((name for name in candidates if name in present), None)
        if found is None:
            wanted = " or ".join(repr(name) for name in candidates)
            raise InvalidArgument(f"{path}: lacks the column {wanted}")
        names[canonical] = found
    return names


def _read_file(path: Path) -> pa.Table:
    """One file in canonical columns: invoice, code, description (whitespace collapsed),
    quantity, at (UTC microseconds), price, customer, country."""
    names = _column_names(path)
    table = pq.read_table(path, columns=list(dict.fromkeys(names.values())))
    column = {canonical: table.column(name) for canonical, name in names.items()}
    description = pc.cast(pc.fill_null(column["description"], ""), pa.string())
    description = pc.utf8_trim_whitespace(pc.replace_substring_regex(description, r"\s+", " "))
    return pa.table(
        {
            "invoice": _code_text(column["invoice"]),
            "code": _code_text(column["stock_code"]),
            "description": description,
            "quantity": pc.cast(pc.fill_null(column["quantity"], 0), pa.int64()),
            "at": _mapped(column["invoice_date"], lambda v: _time_micros(v, path), pa.int64()),
            "price": pc.cast(pc.fill_null(column["unit_price"], 0.0), pa.float64()),
            "customer": _mapped(column["customer_id"], _customer_id, pa.string()),
            "country": pc.utf8_trim_whitespace(
                pc.cast(pc.fill_null(column["country"], ""), pa.string())
            ),
        }
    )


def _without_overlap(tables: list[pa.Table]) -> pa.Table:
    """The files' rows, each invoice taken from the newest file holding it (files ordered by
    their latest invoice date)."""
    tables = sorted(tables, key=lambda t: (pc.max(t["at"]).as_py() or 0) if t.num_rows else 0)
    kept = []
    later: set[str] = set()
    for table in reversed(tables):
        if later:
            table = table.filter(pc.invert(pc.is_in(table["invoice"], pa.array(sorted(later)))))
        kept.append(table)
        later |= set(pc.unique(table["invoice"]).to_pylist())
    return pa.concat_tables(kept[::-1])


def _net_cancellations(
    shoppers: list[str],
    codes: list[str],
    times: list[int],
    quantities: list[int],
    cancellations: list[dict[str, Any]],
) -> tuple[int, int]:
    """Take each cancellation's units from the customer's latest purchases of the product at
    or before it (``quantities`` in place; purchases in time order); return (units removed,
    cancellation lines of which nothing was matched)."""
    wanted = {(c["customer"], c["code"]) for c in cancellations if c["customer"]}
    by_shopper_product: dict[tuple[str, str], list[int]] = defaultdict(list)
    for index, key in enumerate(zip(shoppers, codes, strict=True)):
        if key in wanted:
            by_shopper_product[key].append(index)
    removed = unmatched = 0
    for cancellation in sorted(cancellations, key=lambda c: (c["at"], c["invoice"], c["code"])):
        left = -cancellation["quantity"]
        candidates = by_shopper_product.get((cancellation["customer"], cancellation["code"]), [])
        position = bisect_right(candidates, cancellation["at"], key=times.__getitem__)
        for index in reversed(candidates[:position]):
            if left == 0:
                break
            taken = min(left, quantities[index])
            quantities[index] -= taken
            left -= taken
        removed += -cancellation["quantity"] - left
        unmatched += left == -cancellation["quantity"]
    return removed, unmatched


def _titles(rows: pa.Table) -> dict[str, str]:
    """Product code -> its most frequent description other than "" and "Unknown" in
    ``rows`` (ties: the one seen first)."""
    described = rows.filter(
        pc.and_(
            pc.not_equal(rows["description"], ""),
            pc.not_equal(pc.utf8_lower(rows["description"]), UNKNOWN_DESCRIPTION),
        )
    )
    counts = described.group_by(["code", "description"]).aggregate(
        [("row", "count"), ("row", "min")]
    )
    best: dict[str, tuple[int, int, str]] = {}
    for code, description, count, first in zip(
        _values(counts["code"]),
        _values(counts["description"]),
        _values(counts["row_count"]),
        _values(counts["row_min"]),
        strict=True,
    ):
        if code not in best or (-count, first) < best[code][:2]:
            best[code] = (-count, first, description)
    return {code: description for code, (_, _, description) in best.items()}


def load_online_retail(folder: Path) -> OnlineRetail:
    """Read every ``*.parquet`` file of ``folder`` (UCI Online Retail, either column naming)
    and clean it by the rules of this module's docstring.

    Raises InvalidArgument naming the folder when it holds no parquet file, and naming the
    file and the column when a file lacks one.
    """
    folder = Path(folder)
    paths = sorted(folder.glob("*.parquet")) if folder.is_dir() else []
    if not paths:
        raise InvalidArgument(f"{folder}: holds no parquet file")
    rows = _without_overlap([_read_file(path) for path in paths])
    rows = rows.append_column("row", pa.array(range(rows.num_rows), type=pa.int64()))

    product = pc.match_substring_regex(rows["code"], PRODUCT_CODE_PATTERN)
    cancelling = pc.starts_with(rows["invoice"], CANCELLATION_PREFIX)
    is_cancellation = pc.and_(pc.and_(product, cancelling), pc.less(rows["quantity"], 0))
    is_purchase = pc.and_(
        pc.and_(product, pc.invert(cancelling)),
        pc.and_(pc.greater(rows["quantity"], 0), pc.greater(rows["price"], 0.0)),
    )
    dropped = rows.num_rows - pc.sum(is_cancellation).as_py() - pc.sum(is_purchase).as_py()
    product_rows = rows.filter(product)
    cancellations = rows.filter(is_cancellation).to_pylist()
    sales = rows.filter(is_purchase)
    sales = sales.append_column("amount", pc.multiply(sales["quantity"], sales["price"]))

    # One purchase per (invoice, product), sorted by (time, invoice, product).
    purchases = sales.group_by(["invoice", "code"]).aggregate(
        [
            ("quantity", "sum"),
            ("amount", "sum"),
            ("at", "min"),
            ("customer", "min"),
            ("country", "min"),
        ]
    )
    purchases = purchases.take(
        pc.sort_indices(
            purchases, [("at_min", "ascending"), ("invoice", "ascending"), ("code", "ascending")]
        )
    )
    invoices = _values(purchases["invoice"])
    codes = _values(purchases["code"])
    times = _values(purchases["at_min"])
    shoppers = _values(purchases["customer_min"])
    quantities = _values(purchases["quantity_sum"])
    unit_prices = _values(
        pc.round(pc.divide(purchases["amount_sum"], purchases["quantity_sum"]), 4)
    )
    cancelled, unmatched = _net_cancellations(shoppers, codes, times, quantities, cancellations)

    datetimes = {t: _EPOCH + timedelta(microseconds=t) for t in set(times)}
    lines = [
        RetailLine(invoice, code, quantity, unit_price, datetimes[at], shopper, land)
        for invoice, code, quantity, unit_price, at, shopper, land in zip(
            invoices,
            codes,
            quantities,
            unit_prices,
            times,
            shoppers,
            _values(purchases["country_min"]),
            strict=True,
        )
        if quantity > 0
    ]

    per_product = sales.group_by("code").aggregate([("price", "list"), ("at", "min")])
    titles = _titles(sales)
    fallback_titles = _titles(product_rows)
    products = []
    first_sold = {}
    for code, prices, first in zip(
        per_product["code"].to_pylist(),
        per_product["price_list"].to_pylist(),
        per_product["at_min"].to_pylist(),
        strict=True,
    ):
        title = titles.get(code) or fallback_titles.get(code) or code
        products.append(Product(code, title, price=round(statistics.median(prices), 2)))
        first_sold[code] = _EPOCH + timedelta(microseconds=first)
    products.sort(key=lambda p: p.product_id)
    return OnlineRetail(
        products=products,
        lines=lines,
        cancelled_quantity=cancelled,
        dropped_lines=dropped + unmatched,
        first_sold=first_sold,
    )
