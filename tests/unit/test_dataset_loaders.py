"""The WANDS loader on files written in its exact format, and the
WANDS downloader with a fake opener."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from shared.data.download import WANDS_FILES, download_wands, wands_urls
from shared.data.wands import iter_products, load_wands
from shared.paths import shared_data_dir

pytestmark = pytest.mark.unit

# Verbatim WANDS layout: tab-separated, header names as in the real files (note the
# space in "category hierarchy"), CSV quoting for a field holding quotes, a stray
# quote inside an unquoted field, several classes in one product_class, blank ratings.
PRODUCT_CSV = (
    "product_id\tproduct_name\tproduct_class\tcategory hierarchy\tproduct_description\t"
    "product_features\trating_count\taverage_rating\treview_count\n"
    "0\tsolid wood platform bed\tBeds\tFurniture / Bedroom Furniture / Beds & Headboards / Beds"
    "\tgood, deep sleep can be quite difficult.\tOverallWidth-SideToSide:64.7|dsprimaryproductstyle"
    ":modern|Color:Brown\t15\t4.5\t15\n"
    '1\t"48"" sliding barn door"\tBarn Door Hardware|Interior Doors\tHome Improvement / Doors'
    '\t24" wide, fits most doors\tfinish:black|price:129.99|note:ratio 1:2|junk\t\t\t\n'
    "2\tall-clad 7 qt . slow cooker\tCrock Pots & Slow Cookers\t\t\t\t3\t4\t2\n"
)
QUERY_CSV = (
    "query_id\tquery\tquery_class\n"
    "0\tsalon chair\tMassage Chairs\n"
    '285\t"48"" sliding single track , barn door for laundry"\tBarn Door Hardware\n'
    "197\tdesk for kids tjat ate 10 year old\t\n"
)
LABEL_CSV = (
    "id\tquery_id\tproduct_id\tlabel\n0\t0\t0\tIrrelevant\n1\t285\t1\tExact\n2\t285\t0\tPartial\n"
)


@pytest.fixture
def wands_dir(tmp_path: Path) -> Path:
    (tmp_path / "product.csv").write_text(PRODUCT_CSV, encoding="utf-8")
    (tmp_path / "query.csv").write_text(QUERY_CSV, encoding="utf-8")
    (tmp_path / "label.csv").write_text(LABEL_CSV, encoding="utf-8")
    return tmp_path


def test_load_wands_all_three_files(wands_dir: Path) -> None:
    dataset = load_wands(wands_dir)
    assert [(q.query_id, q.text, q.query_class) for q in dataset.queries] == [
        ("0", "salon chair", "Massage Chairs"),
        ("285", '48" sliding single track , barn door for laundry', "Barn Door Hardware"),
        ("197", "desk for kids tjat ate 10 year old", None),
    ]
    assert dataset.labels == {"0": {"0": "Irrelevant"}, "285": {"1": "Exact", "0": "Partial"}}
    assert dataset.judged_query_ids() == {"0", "285"}
    bed, door, cooker = dataset.products or []
    assert bed.title == "solid wood platform bed"
    assert bed.category == "Furniture / Bedroom Furniture / Beds & Headboards / Beds"
    assert bed.attributes == {
        "overallwidth-sidetoside": "64.7",
        "dsprimaryproductstyle": "modern",
        "color": "Brown",
    }
    assert (bed.rating, bed.review_count, bed.price) == (4.5, 15, 0.0)
    assert door.title == '48" sliding barn door'
    assert door.product_class == "Barn Door Hardware"  # first of "A|B"
    assert door.description == '24" wide, fits most doors'
    assert door.price == 129.99
    assert door.attributes == {"finish": "black", "note": "ratio 1:2"}
    assert (door.rating, door.review_count) == (0.0, 0)
    assert (cooker.rating, cooker.review_count, cooker.category) == (4.0, 2, "")


def test_load_wands_queries_only(tmp_path: Path) -> None:
    (tmp_path / "query.csv").write_text(QUERY_CSV, encoding="utf-8")
    dataset = load_wands(tmp_path)
    assert len(dataset.queries) == 3
    assert dataset.products is None and dataset.labels == {}


def test_iter_products_streams(wands_dir: Path) -> None:
    stream = iter_products(wands_dir)
    assert next(stream).product_id == "0"
    assert [p.product_id for p in stream] == ["1", "2"]


@pytest.mark.skipif(
    not (shared_data_dir() / "wands" / "query.csv").exists(), reason="shared data folder absent"
)
def test_real_wands_queries_all_load() -> None:
    dataset = load_wands(shared_data_dir() / "wands")
    assert len(dataset.queries) == 330
    assert len({q.query_id for q in dataset.queries}) == 330
    by_id = {q.query_id: q for q in dataset.queries}
    assert by_id["0"].text == "salon chair" and by_id["0"].query_class == "Massage Chairs"
    assert by_id["391"].text == 'writing desk 48"'
    assert by_id["197"].query_class is None
    assert sum(q.query_class is None for q in dataset.queries) == 2
    assert dataset.products is None and dataset.labels == {}


def test_download_wands_builds_raw_urls_and_writes_files(tmp_path: Path) -> None:
    requested: list[str] = []

    def fake_opener(url: str) -> io.BytesIO:
        requested.append(url)
        return io.BytesIO(f"contents of {url.rsplit('/', 1)[-1]}".encode())

    paths = download_wands(tmp_path / "wands", opener=fake_opener)
    base = "https://raw.githubusercontent.com/wayfair/WANDS/main/dataset/"
    assert requested == [base + name for name in WANDS_FILES]
    assert wands_urls() == {name: base + name for name in WANDS_FILES}
    assert [p.name for p in paths] == list(WANDS_FILES)
    assert (tmp_path / "wands" / "label.csv").read_text() == "contents of label.csv"
    assert not list((tmp_path / "wands").glob("*.part"))

    download_wands(tmp_path / "wands", opener=fake_opener)  # present: not fetched again
    assert len(requested) == 3
