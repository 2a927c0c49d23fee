"""The Online Retail loader on small parquet files in both column namings, and on the real
folder when it is at hand."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shared.data.online_retail import RetailLine, is_product_code, load_online_retail
from shared.errors import InvalidArgument
from shared.paths import shared_data_dir

pytestmark = pytest.mark.unit

REAL_FOLDER = shared_data_dir() / "online_retail"

# Online Retail II naming: text dates, integer customers (null for a guest).
FIRST_COLUMNS = ("Invoice", "StockCode", "Description", "Quantity", "InvoiceDate", "Price")
FIRST_COLUMNS += ("Customer ID", "Country")
FIRST_ROWS = [
    ("100001", "85123A", "WHITE HANGING  HEART ", 6, "2010-11-30 10:00:00", 2.55, 17850),
    ("100001", " 85123a", "white hanging heart", 4, "2010-11-30 10:00:00", 2.45, 17850),
    ("100001", "21232", "STRAWBERRY CERAMIC TRINKET BOX", 3, "2010-11-30 10:00:00", 1.25, 17850),
    ("100001", "POST", "POSTAGE", 1, "2010-11-30 10:00:00", 18.0, 17850),
    ("100002", "22423", "REGENCY CAKESTAND", 2, "2010-11-30 11:00:00", 12.75, None),  # guest
    ("100003", "22423", "regency cakestand", 5, "2010-07-01 12:00:00", 0.0, 13047),
    ("100004", "21232", "damaged", -3, "2010-11-30 12:00:00", 1.25, None),
    ("C100005", "21232", "", -3, "2010-12-01 09:00:00", 1.25, 17850),
    ("C100005", "85123A", "", -4, "2010-12-01 09:00:00", 2.55, 17850),
    ("C100006", "22423", "", -1, "2010-12-01 10:00:00", 12.75, 12346),
    ("536365", "85123A", "WHITE X", 6, "2010-12-01 08:26:00", 2.55, 17850),
]
# Online Retail naming: timestamps, float customers; it repeats invoice 536365.
SECOND_COLUMNS = ("InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate")
SECOND_COLUMNS += ("UnitPrice", "CustomerID", "Country")
SECOND_ROWS = [
    ("536365", "85123A", "WHITE HANGING HEART", 6, datetime(2010, 12, 1, 8, 26), 2.55, 17850.0),
    # British Summer Time: 09:00 UTC.
    ("536366", "22423", "Unknown", 1, datetime(2011, 6, 15, 10, 0), 10.0, 12346.0),
    ("536367", "23166", "NEW PRODUCT", 12, datetime(2011, 7, 1, 9, 0), 1.04, 12347.0),
    ("536368", "DOT", "DOTCOM POSTAGE", 1, datetime(2011, 7, 2, 9, 0), 100.0, math.nan),
]
SECOND_COUNTRIES = ["United Kingdom", "France", "Germany", "United Kingdom"]


def _columns(names: Sequence[str], rows: list[tuple], countries: list[str]) -> dict[str, list]:
    return dict(zip(names, [*map(list, zip(*rows, strict=True)), countries], strict=True))


FIRST_RELEASE = _columns(FIRST_COLUMNS, FIRST_ROWS, ["United Kingdom"] * len(FIRST_ROWS))
SECOND_RELEASE = _columns(SECOND_COLUMNS, SECOND_ROWS, SECOND_COUNTRIES)
FIRST_TYPES = {"Customer ID": pa.int64(), "InvoiceDate": pa.string()}
SECOND_TYPES = {"CustomerID": pa.float64(), "InvoiceDate": pa.timestamp("us")}


def _write(path: Path, columns: dict[str, Sequence], types: dict[str, pa.DataType]) -> None:
    arrays = {
        name: pa.array(list(values), type=types.get(name)) for name, values in columns.items()
    }
    pq.write_table(pa.table(arrays), path)


@pytest.fixture
def retail_dir(tmp_path: Path) -> Path:
    _write(tmp_path / "online_retail_ii_2009-12_2010-12.parquet", FIRST_RELEASE, FIRST_TYPES)
    _write(tmp_path / "some_other_name.parquet", SECOND_RELEASE, SECOND_TYPES)
    return tmp_path


def _utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def test_loader_cleans_both_namings(retail_dir: Path) -> None:
    store = load_online_retail(retail_dir)
    assert store.lines == [
        # 85123A twice in one invoice (one code in lower case): summed, price weighted.
        RetailLine("100001", "85123A", 10, 2.51, _utc(2010, 11, 30, 10), "17850", "United Kingdom"),
        # 21232 of 100001 is netted to 0 by C100005 and dropped.
        RetailLine("100002", "22423", 2, 12.75, _utc(2010, 11, 30, 11), "", "United Kingdom"),
        # Read once (both files hold it); C100005 took 4 of its 6, the most recent purchase.
        RetailLine(
            "536365", "85123A", 2, 2.55, _utc(2010, 12, 1, 8, 26), "17850", "United Kingdom"
        ),
        RetailLine("536366", "22423", 1, 10.0, _utc(2011, 6, 15, 9), "12346", "France"),
        RetailLine("536367", "23166", 12, 1.04, _utc(2011, 7, 1, 8), "12347", "Germany"),
    ]
    assert store.cancelled_quantity == 3 + 4
    # POST, DOT, price 0, the -3 adjustment, C100006 (12346 bought nothing before it).
    assert store.dropped_lines == 5
    assert all(line.at.tzinfo is UTC for line in store.lines)


def test_loader_builds_the_catalog(retail_dir: Path) -> None:
    store = load_online_retail(retail_dir)
    by_id = {p.product_id: p for p in store.products}
    assert [p.product_id for p in store.products] == ["21232", "22423", "23166", "85123A"]
    # Whitespace collapsed, case kept, the most frequent wins over "white hanging heart".
    assert by_id["85123A"].title == "WHITE HANGING HEART"
    assert by_id["85123A"].price == 2.55  # median of 2.55, 2.45, 2.55
    # "Unknown" and the price-0 line's description are not titles.
    assert by_id["22423"].title == "REGENCY CAKESTAND"
    assert by_id["22423"].price == pytest.approx(11.38)  # median of 12.75 and 10.0, rounded
    # Sold only later, and sold then cancelled: both are products.
    assert by_id["23166"].title == "NEW PRODUCT"
    assert by_id["21232"].title == "STRAWBERRY CERAMIC TRINKET BOX"
    assert all(p.product_class == "" and p.category == "" for p in store.products)
    assert all(p.validation_error() is None for p in store.products)
    assert store.first_sold == {
        "21232": _utc(2010, 11, 30, 10),
        "22423": _utc(2010, 11, 30, 11),
        "23166": _utc(2011, 7, 1, 8),
        "85123A": _utc(2010, 11, 30, 10),
    }


def test_overlap_is_read_from_the_newest_file(tmp_path: Path) -> None:
    # Either file alone holds 536365 once; together they still hold it once.
    _write(tmp_path / "b.parquet", FIRST_RELEASE, FIRST_TYPES)
    _write(tmp_path / "a.parquet", SECOND_RELEASE, SECOND_TYPES)
    lines = [line for line in load_online_retail(tmp_path).lines if line.invoice == "536365"]
    assert [(line.product_id, line.quantity) for line in lines] == [("85123A", 2)]


def test_product_codes() -> None:
    assert is_product_code("85123A") and is_product_code("22423")
    for code in ("POST", "DOT", "M", "C2", "BANK CHARGES", "AMAZONFEE", "ADJUST", "TEST001"):
        assert not is_product_code(code)
    assert not is_product_code("GIFT_0001_20") and not is_product_code("DCGS0058")


def test_folder_without_parquet_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "notes.csv").write_text("Invoice\n")
    with pytest.raises(InvalidArgument, match="holds no parquet file") as raised:
        load_online_retail(tmp_path)
    assert str(tmp_path) in raised.value.message
    with pytest.raises(InvalidArgument, match="holds no parquet file"):
        load_online_retail(tmp_path / "absent")


def test_missing_column_names_file_and_column(tmp_path: Path) -> None:
    columns = {name: values for name, values in SECOND_RELEASE.items() if name != "UnitPrice"}
    _write(tmp_path / "broken.parquet", columns, SECOND_TYPES)
    with pytest.raises(InvalidArgument, match=r"broken\.parquet: lacks the column 'Price'"):
        load_online_retail(tmp_path)


@pytest.mark.skipif(not REAL_FOLDER.is_dir(), reason="shared data folder online_retail absent")
def test_real_online_retail_is_plausible() -> None:
    store = load_online_retail(REAL_FOLDER)
    assert 3_500 <= len(store.products) <= 5_500  # 4,449 measured
    customers = {line.customer_id for line in store.lines if line.customer_id}
    # The README counts 5,314 customers; 5,216 keep a purchase after cleaning.
    assert 5_000 <= len(customers) <= 5_600
    assert 700_000 <= len(store.lines) <= 846_166
    assert store.lines[-1].at < _utc(2011, 9, 1)
    assert store.lines[0].at >= _utc(2009, 12, 1)
    assert not any(line.invoice.startswith("C") for line in store.lines)
    assert all(line.quantity > 0 and line.unit_price > 0 for line in store.lines)
    assert all(p.validation_error() is None for p in store.products)
    assert set(store.first_sold) == {p.product_id for p in store.products}
    # The overlap (2010-12-01..09) is read once: invoice 536365 has its 7 lines.
    assert sum(line.invoice == "536365" for line in store.lines) == 7
    assert store.cancelled_quantity > 0 and store.dropped_lines > 0
