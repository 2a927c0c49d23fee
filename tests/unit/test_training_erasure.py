"""A shopper's erasure reaches the training folders written from feedback: over a real
SQLite feedback store and real folders, the erased shopper's histories (sequence folders)
or the queries they searched (judgments folders) go, the others stay, the folder still
loads (counts and fingerprint follow), and applying again changes nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from shared.data.synthetic import generate_store, write_wands
from shared.recommendation.events import CART, PURCHASE, VIEW, Interaction
from shared.storage.database import create_db_engine
from shared.storage.feedback import FeedbackStore, ValidEvent
from shared.training.clicks import query_id
from shared.training.data import load_training_data
from shared.training.erasure import apply_erasures
from shared.training.sequence_data import (
    HISTORIES_FILE,
    INFO_FILE,
    read_sequence_dataset,
    write_sequence_dataset,
)

pytestmark = pytest.mark.unit

PRODUCTS = [f"p{i}" for i in range(8)]


def _history(user: str, session: str, start: float, products: list[str]) -> list[Interaction]:
    kinds = [VIEW, CART, PURCHASE]
    return [
        Interaction(p, kinds[i % 3], start + 60 * i, user=user, session=session)
        for i, p in enumerate(products)
    ]


# alice by user id; bob by session only; carol by user id with a session of her own.
INTERACTIONS = [
    *_history("alice", "alice-s", 1000, ["p0", "p1", "p2", "p3"]),
    *_history("", "bob-s", 2000, ["p1", "p2", "p4"]),
    *_history("carol", "carol-s", 3000, ["p5", "p6", "p7", "p0"]),
]


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    ]
)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FeedbackStore]:
    """The feedback store on a SQLite file, and on PostgreSQL (the production backend)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'feedback.db'}"
    else:
        url = str(request.getfixturevalue("postgres_url"))
    store = FeedbackStore(create_db_engine(url))
    yield store
    store.engine.dispose()


def _write(training: Path, name: str, store: FeedbackStore) -> Path:
    folder = training / name
    vectors = np.eye(len(PRODUCTS), dtype=np.float32)
    write_sequence_dataset(
        folder, INTERACTIONS, PRODUCTS, vectors, "1", erasures_through=store.last_erasure()
    )
    return folder


def _first_products(folder: Path) -> list[str]:
    data = read_sequence_dataset(folder)  # checks the fingerprint against the files
    return [PRODUCTS[history[0][0]] for history in data.histories]


def test_an_erased_shoppers_histories_leave_every_folder_and_the_rest_stay(
    tmp_path: Path, store: FeedbackStore
) -> None:
    training = tmp_path / "training"
    first = _write(training, "sequence-feedback-1", store)
    second = _write(training, "sequence-feedback-2", store)
    assert _first_products(first) == ["p0", "p1", "p5"]  # alice, bob, carol
    # No shopper id is written, only erasure keys.
    text = (first / HISTORIES_FILE).read_text(encoding="utf-8")
    assert "alice" not in text and "bob" not in text and "carol" not in text

    assert apply_erasures(training, lambda: store).rewritten == []  # nothing erased yet
    store.delete_shopper(user_id="alice")
    sweep = apply_erasures(training, lambda: store)
    assert sweep.rewritten == [first.name, second.name] and sweep.histories_removed == 2
    for folder in (first, second):
        assert _first_products(folder) == ["p1", "p5"]  # bob and carol kept
        info = json.loads((folder / INFO_FILE).read_text(encoding="utf-8"))
        assert info["shoppers"] == 2 and info["events"] == 3 + 4
        assert info["erasures_through"] == store.last_erasure() == 1
        assert info["erased_histories"] == 1

    # Applying again changes nothing; an erasure by session id finds carol's line, whose
    # events were grouped by her user id.
    assert apply_erasures(training, lambda: store).rewritten == []
    store.delete_shopper(session_id="carol-s")
    assert apply_erasures(training, lambda: store).histories_removed == 2
    assert _first_products(first) == ["p1"]


def test_a_folder_written_after_an_erasure_is_not_rewritten_for_it(
    tmp_path: Path, store: FeedbackStore
) -> None:
    store.delete_shopper(user_id="someone-else")
    folder = _write(tmp_path / "training", "sequence-feedback-1", store)
    before = (folder / HISTORIES_FILE).read_bytes()
    sweep = apply_erasures(tmp_path / "training", lambda: store)
    assert sweep.folders == 1 and sweep.rewritten == []
    assert (folder / HISTORIES_FILE).read_bytes() == before


def test_folders_without_erasure_keys_are_reported_and_no_database_is_opened(
    tmp_path: Path,
) -> None:
    legacy = tmp_path / "training" / "sequence-feedback-old"
    legacy.mkdir(parents=True)
    (legacy / HISTORIES_FILE).write_text('{"events": [[0, 0, 1.0], [1, 0, 2.0]]}\n')
    (legacy / INFO_FILE).write_text(json.dumps({"shoppers": 1}))

    def no_store() -> FeedbackStore:
        raise AssertionError("the feedback database was opened")

    sweep = apply_erasures(tmp_path / "training", no_store)
    assert sweep.unkeyed == ["sequence-feedback-old"] and sweep.folders == 0


def _search_events(user: str, query: str, products: list[str], page: str) -> list[ValidEvent]:
    """A page of ``products`` shown to ``user`` for ``query`` and its first result clicked."""
    now = datetime.now(UTC) - timedelta(hours=1)
    shown = [
        ValidEvent(
            f"{page}-i{n}",
            "impression",
            now,
            now,
            product,
            user_id=user,
            request_id=page,
            query=query,
            explored=False,
            position=n + 1,
        )
        for n, product in enumerate(products)
    ]
    click = ValidEvent(
        f"{page}-c",
        "click",
        now,
        now,
        products[0],
        user_id=user,
        request_id=page,
        query=query,
        position=1,
    )
    return [*shown, click]


def test_a_judgments_folder_loses_the_queries_an_erased_shopper_searched(
    tmp_path: Path, store: FeedbackStore
) -> None:
    from shopsense.trainer.v1 import trainer_service_pb2 as tpb

    from services.trainer.feedback_data import feedback_dataset

    catalog = tmp_path / "catalog"
    synthetic = generate_store(40, 12, seed=3)
    write_wands(synthetic, catalog)
    ids = [p.product_id for p in synthetic.products[:10]]
    queries = [f"query number {n}" for n in range(6)]
    events = [e for n, q in enumerate(queries) for e in _search_events(f"u{n}", q, ids, f"r{n}")]
    # alice searched query 0 too (another page), and nothing else.
    events += _search_events("alice", queries[0], ids, "alice-page")
    assert all(store.record(events))
    training = tmp_path / "training"
    training.mkdir()
    folder, _ = feedback_dataset(
        tpb.FeedbackSource(enabled=True), catalog, lambda: store.engine, training
    )
    assert folder.name.startswith("feedback-") and [p.name for p in training.iterdir()] == [
        folder.name
    ]
    written = (folder / "query.csv").read_text(encoding="utf-8")
    assert all(q in written for q in queries)

    store.delete_shopper(user_id="alice")
    sweep = apply_erasures(training, lambda: store)
    assert sweep.rewritten == [folder.name] and sweep.queries_removed == 1
    kept = (folder / "query.csv").read_text(encoding="utf-8")
    assert queries[0] not in kept and all(q in kept for q in queries[1:])
    labels = (folder / "label.csv").read_text(encoding="utf-8").splitlines()
    assert labels[0].split("\t")[:2] == ["id", "query_id"] and len(labels) > 1
    assert query_id(queries[0]) not in "".join(labels)
    # The folder still loads for training; another erasure of nobody here changes nothing.
    assert load_training_data(folder, kind="cross_encoder")
    store.delete_shopper(user_id="nobody-here")
    assert apply_erasures(training, lambda: store).rewritten == []
