"""Progress of the catalog load: seen on a terminal and, line by line, in a log or a pipe."""

from __future__ import annotations

import io
import re
import sys
import time

import pytest
from shopsense.retrieval.v1 import retrieval_service_pb2 as pb

import shared.runtime.catalog as catalog
from shared.data.catalog import Product

pytestmark = pytest.mark.unit


class _FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class _TerminalStream(io.StringIO):
    def isatty(self) -> bool:
        return True


class _FakeRetrieval:
    """UpsertProducts of a retrieval service that takes a little time per stream."""

    def __init__(self, channel: object) -> None:
        self.stored = 0

    def UpsertProducts(self, messages, timeout: float) -> pb.UpsertProductsResponse:
        products = [p for message in messages for p in message.products]
        time.sleep(0.02)
        self.stored += len(products)
        results = [pb.ItemResult(product_id=p.product_id) for p in products]
        return pb.UpsertProductsResponse(results=results, catalog_size=self.stored)


LINE = re.compile(
    r"^embedding catalog: (?P<done>[\d,]+)/12 products \(\d+%\)"
    r"(?:, [\d,]+ products/s, (?:\d+ min )?\d+ s left| in (?:\d+ min )?\d+ s, [\d,]+ products/s)$"
)


def test_upsert_products_writes_count_rate_and_time_left_line_by_line_to_a_log(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log = io.StringIO()  # not a terminal, as when `make run` is piped or logged
    monkeypatch.setattr(sys, "stderr", log)
    monkeypatch.setattr(catalog, "open_channel", lambda target: None)
    monkeypatch.setattr(catalog.retrieval_service_pb2_grpc, "RetrievalServiceStub", _FakeRetrieval)
    products = [Product(str(i), f"product {i}", product_class="Sofas") for i in range(12)]

    reply = catalog.upsert_products("retrieval:0", products, progress=True, chunk=4)

    assert reply.catalog_size == 12 and len(reply.results) == 12
    text = log.getvalue()
    assert "\r" not in text, text
    lines = text.splitlines()
    assert lines and all(LINE.match(line) for line in lines), lines
    # The first chunk is reported at once, with the time left; the last says it is done.
    assert LINE.match(lines[0])["done"] == "4" and lines[0].endswith(" left")
    assert LINE.match(lines[-1])["done"] == "12" and " in " in lines[-1]


def test_a_log_gets_a_line_at_the_first_update_then_every_interval_and_at_the_end() -> None:
    from shared.runtime.progress import CountProgress

    clock, log = _FakeClock(), io.StringIO()
    with CountProgress(
        20_000, "embedding catalog", "products", stream=log, interval_s=10.0, clock=clock
    ) as progress:
        for _ in range(19):  # 1,024 products every 12 s: a slow, AVX2-only machine
            clock.now += 12.0
            progress.advance(1024)
        clock.now += 6.0
        progress.advance(20_000 - 19 * 1024)
    lines = log.getvalue().splitlines()
    assert (
        lines[0] == "embedding catalog: 1,024/20,000 products (5%), 85 products/s, 3 min 42 s left"
    )
    assert (
        lines[1] == "embedding catalog: 2,048/20,000 products (10%), 85 products/s, 3 min 30 s left"
    )
    assert len(lines) == 20  # each 12 s chunk is over the 10 s interval, plus the last line
    assert (
        lines[-1] == "embedding catalog: 20,000/20,000 products (100%) in 3 min 54 s, 85 products/s"
    )


def test_updates_closer_than_the_interval_are_folded_into_the_next_line() -> None:
    from shared.runtime.progress import CountProgress

    clock, log = _FakeClock(), io.StringIO()
    with CountProgress(
        10_000, "embedding catalog", "products", stream=log, interval_s=10.0, clock=clock
    ) as progress:
        for _ in range(10):  # 1,000 products every 3 s: a fast machine
            clock.now += 3.0
            progress.advance(1000)
    lines = log.getvalue().splitlines()
    assert [line.split()[2] for line in lines] == [
        "1,000/10,000",
        "5,000/10,000",
        "9,000/10,000",
        "10,000/10,000",
    ]
    assert lines[1].endswith("333 products/s, 15 s left")


def test_a_terminal_gets_a_bar_with_count_rate_and_time_left() -> None:
    from shared.runtime.progress import CountProgress

    clock, screen = _FakeClock(), _TerminalStream()
    with CountProgress(
        20_000, "embedding catalog", "products", stream=screen, clock=clock
    ) as progress:
        for _ in range(4):
            clock.now += 12.0
            progress.advance(1024)
    shown = screen.getvalue()
    assert "4096/20000" in shown and "85 products/s" in shown and "0:03:" in shown, shown


def test_progress_off_writes_nothing() -> None:
    from shared.runtime.progress import CountProgress

    log = io.StringIO()
    with CountProgress(10, "embedding catalog", "products", stream=log, enabled=False) as p:
        p.advance(10)
    assert log.getvalue() == ""
