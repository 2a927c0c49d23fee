"""Sequence training folders (shared.training.sequence_data): what is written from the
shoppers' events (no shopper ids, repeats collapsed, unknown products dropped, the newest
events kept), the leave-last-out dev split when loading, errors that name the file, and
the offline next-item figures the trainer's job computes through onnxruntime agreeing with
the training code's full ranking."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from shared.recommendation.events import CART, PURCHASE, VIEW, Interaction
from shared.recommendation.sequence_inputs import gap_buckets
from shared.storage.feedback import erasure_key
from shared.training.sequence_data import (
    HISTORIES_FILE,
    INFO_FILE,
    ITEMS_FILE,
    VECTORS_FILE,
    SequenceDatasetError,
    load_sequence_dataset,
    read_sequence_dataset,
    write_sequence_dataset,
)

pytestmark = pytest.mark.unit

PRODUCTS = [f"p{i}" for i in range(12)]
DIM = 8
T0 = 1_700_000_000.0


def _vectors(n: int = len(PRODUCTS), dim: int = DIM, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _event(product: str, kind: int, minutes: float, user: str = "", session: str = ""):
    return Interaction(product, kind, T0 + 60.0 * minutes, user=user, session=session)


# alice (user id, events out of order, a repeated view, an unknown product), a session-only
# shopper, a shopper with one event, and an event with no shopper id at all.
EVENTS = [
    _event("p3", VIEW, 5, user="alice-7781", session="s-a1"),
    _event("p1", VIEW, 0, user="alice-7781", session="s-a1"),
    _event("p1", VIEW, 1, user="alice-7781", session="s-a1"),  # a reload
    _event("gone", VIEW, 2, user="alice-7781", session="s-a1"),  # not in the catalog
    _event("p1", CART, 3, user="alice-7781", session="s-a2"),
    _event("p4", PURCHASE, 90, user="alice-7781", session="s-a2"),
    _event("p5", VIEW, 10, session="anon-session-42"),
    _event("p6", VIEW, 11, session="anon-session-42"),
    _event("p7", VIEW, 12, session="anon-session-42"),
    _event("p2", VIEW, 20, user="bob-only-once"),
    _event("p8", VIEW, 30),
]


def _write(folder: Path, events=EVENTS, **kwargs) -> dict:
    return write_sequence_dataset(folder, events, PRODUCTS, _vectors(), "3", **kwargs)


def test_the_folder_holds_cleaned_histories_and_no_shopper_id(tmp_path: Path) -> None:
    info = _write(tmp_path / "data")
    folder = tmp_path / "data"

    assert json.loads((folder / ITEMS_FILE).read_text()) == PRODUCTS
    vectors = np.load(folder / VECTORS_FILE)
    assert vectors.dtype == np.float32 and vectors.shape == (len(PRODUCTS), DIM)
    lines = [json.loads(line) for line in (folder / HISTORIES_FILE).read_text().splitlines()]
    rows = {p: i for i, p in enumerate(PRODUCTS)}
    # alice first (her first event is the oldest), oldest first, the reload and the
    # unknown product gone; the view and the cart of p1 are two events (kinds differ).
    assert lines == [
        {
            "events": [
                [rows["p1"], VIEW, T0],
                [rows["p1"], CART, T0 + 180],
                [rows["p3"], VIEW, T0 + 300],
                [rows["p4"], PURCHASE, T0 + 5400],
            ],
            # Not the ids: their erasure keys (an erasure of any of them removes the line).
            "shoppers": sorted(
                [
                    erasure_key("u", "alice-7781"),
                    erasure_key("s", "s-a1"),
                    erasure_key("s", "s-a2"),
                ]
            ),
        },
        {
            "events": [
                [rows["p5"], VIEW, T0 + 600],
                [rows["p6"], VIEW, T0 + 660],
                [rows["p7"], VIEW, T0 + 720],
            ],
            "shoppers": [erasure_key("s", "anon-session-42")],
        },
    ]
    written = "".join(p.read_text(errors="replace") for p in folder.iterdir())
    for shopper in ("alice", "7781", "s-a1", "anon-session-42", "bob-only-once"):
        assert shopper not in written
    assert info == json.loads((folder / INFO_FILE).read_text())
    assert (info["shoppers"], info["events"], info["products"]) == (2, 7, len(PRODUCTS))
    assert info["text_encoder_version"] == "3" and len(info["fingerprint"]) == 64
    assert info["dropped"] == {
        "unknown_product": 1,
        "no_shopper_id": 1,
        "repeats": 1,
        "beyond_max_events": 0,
        "single_event_shoppers": 1,
    }
    assert (info["interactions"], info["shoppers_seen"], info["dev_eligible"]) == (11, 3, 2)


def test_same_events_in_another_order_give_the_same_folder(tmp_path: Path) -> None:
    shuffled = list(EVENTS)
    random.Random(5).shuffle(shuffled)
    first, second = _write(tmp_path / "a"), _write(tmp_path / "b", shuffled)
    assert first["fingerprint"] == second["fingerprint"]


def test_a_shopper_keeps_the_newest_events(tmp_path: Path) -> None:
    events = [_event(PRODUCTS[i % 6], VIEW, i, user="u") for i in range(10)]
    info = _write(tmp_path / "data", events, max_events=4)
    (line,) = (tmp_path / "data" / HISTORIES_FILE).read_text().splitlines()
    assert [e[0] for e in json.loads(line)["events"]] == [0, 1, 2, 3]  # minutes 6..9
    assert json.loads(line)["events"][0][2] == T0 + 360
    assert info["dropped"]["beyond_max_events"] == 6


def test_loading_holds_out_each_last_new_product(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    events = [
        *EVENTS,
        # carol's only new product after two events is none: p10 comes after one event
        # and her last event repeats p9 (a history product: it could not be ranked).
        _event("p9", VIEW, 40, user="carol"),
        _event("p10", VIEW, 41, user="carol"),
        _event("p9", PURCHASE, 42, user="carol"),
        # dan has two events: nothing left to train on if one were held out.
        _event("p0", VIEW, 50, user="dan"),
        _event("p11", VIEW, 51, user="dan"),
        # erin viewed, carted and bought p3: her view of it is held out, and the cart and
        # purchase after it leave training with it.
        _event("p0", VIEW, 60, user="erin"),
        _event("p2", VIEW, 61, user="erin"),
        _event("p3", VIEW, 62, user="erin"),
        _event("p3", CART, 63, user="erin"),
        _event("p3", PURCHASE, 64, user="erin"),
    ]
    _write(folder, events)
    corpus, info = load_sequence_dataset(folder)

    rows = {p: i for i, p in enumerate(PRODUCTS)}
    assert corpus.item_keys == PRODUCTS and corpus.vectors.shape == (len(PRODUCTS), DIM)
    assert np.allclose(np.linalg.norm(corpus.vectors, axis=1), 1.0, atol=1e-5)
    assert [case.target for case in corpus.dev] == [rows["p4"], rows["p7"], rows["p3"]]
    alice = corpus.dev[0].history
    assert alice.rows == (rows["p1"], rows["p1"], rows["p3"])
    assert alice.kinds == (VIEW, CART, VIEW)
    assert alice.gaps == tuple(gap_buckets([T0, T0 + 180, T0 + 300], 3).tolist())
    assert corpus.dev[2].history.rows == (rows["p0"], rows["p2"])
    # The held-out events leave the training histories; the others train whole.
    assert [h.rows for h in corpus.train] == [
        alice.rows,
        (rows["p5"], rows["p6"]),
        (rows["p9"], rows["p10"], rows["p9"]),
        (rows["p0"], rows["p11"]),
        (rows["p0"], rows["p2"]),
    ]
    assert (info["dev_cases"], info["train_histories"], info["shoppers"]) == (3, 5, 5)


def test_a_dev_case_reads_whole_baskets(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    # Two orders, each line at its order's time: p0 p1, then p2 p3 p4 (p3 is new).
    order = [("p0", 0), ("p1", 0), ("p2", 600), ("p3", 600), ("p0", 600)]
    events = [_event(p, PURCHASE, minutes, user="fay") for p, minutes in order]
    _write(folder, events)
    corpus, _ = load_sequence_dataset(folder)
    rows = {p: i for i, p in enumerate(PRODUCTS)}
    # The target is the last new product of the second order; the case reads the first
    # order only (none of the target's own basket), and so does training.
    assert [(c.history.rows, c.target) for c in corpus.dev] == [
        ((rows["p0"], rows["p1"]), rows["p3"])
    ]
    assert [h.rows for h in corpus.train] == [(rows["p0"], rows["p1"])]
    # A shopper whose only order is one basket gives no dev case.
    _write(tmp_path / "one", events[:2])
    one, _ = load_sequence_dataset(tmp_path / "one")
    assert one.dev == [] and [h.rows for h in one.train] == [(rows["p0"], rows["p1"])]


def test_dev_cases_are_capped_with_a_fixed_seed(tmp_path: Path) -> None:
    events = [
        _event(PRODUCTS[(s + k) % len(PRODUCTS)], VIEW, s * 10 + k, user=f"u{s}")
        for s in range(30)
        for k in range(3)
    ]
    _write(tmp_path / "data", events)
    first, _ = load_sequence_dataset(tmp_path / "data", max_dev=7)
    again, info = load_sequence_dataset(tmp_path / "data", max_dev=7)
    assert len(first.dev) == 7 and first.dev == again.dev
    assert info["dev_cases"] == 7
    # 7 histories lost their last event; the 23 others train on all three.
    assert sorted(len(h.rows) for h in first.train) == [2] * 7 + [3] * 23


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    _write(folder)
    return folder


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        (lambda f: (f / HISTORIES_FILE).unlink(), f"{HISTORIES_FILE}: missing"),
        (lambda f: (f / INFO_FILE).unlink(), f"{INFO_FILE}: missing"),
        (lambda f: (f / ITEMS_FILE).write_text("{not json"), f"{ITEMS_FILE}: not JSON"),
        (lambda f: (f / ITEMS_FILE).write_text('["p0", "p0"]'), "'p0' appears twice"),
        (
            lambda f: np.save(f / VECTORS_FILE, _vectors(n=3)),
            f"{VECTORS_FILE}: shape (3, {DIM}) does not match the {len(PRODUCTS)} products",
        ),
        (
            lambda f: (f / HISTORIES_FILE).write_text('{"events": [[0, 0, 1.0]]}\n{"events": 3}\n'),
            f"{HISTORIES_FILE}:2: must be",
        ),
        (
            lambda f: (f / HISTORIES_FILE).write_text('{"events": [[99, 0, 1.0]]}\n'),
            f"{HISTORIES_FILE}:1: event 0: row 99 is not a row of {ITEMS_FILE}",
        ),
        (
            lambda f: (f / HISTORIES_FILE).write_text('{"events": [[1, 7, 1.0]]}\n'),
            f"{HISTORIES_FILE}:1: event 0: kind 7",
        ),
        (
            lambda f: (f / HISTORIES_FILE).write_text('{"events": [[1, 0, 9.0], [2, 0, 1.0]]}\n'),
            f"{HISTORIES_FILE}:1: event 1: events must be oldest first",
        ),
        (
            lambda f: (f / HISTORIES_FILE).write_text('{"events": [[1, 0, 1.0], [2, 0, 2.0]]}\n'),
            f"{INFO_FILE}: fingerprint",
        ),
    ],
)
def test_a_malformed_folder_is_refused_naming_the_file(tmp_path: Path, damage, named) -> None:
    folder = _folder(tmp_path)
    damage(folder)
    with pytest.raises(SequenceDatasetError) as raised:
        read_sequence_dataset(folder)
    assert named in str(raised.value)
    assert str(folder) in str(raised.value)
    with pytest.raises(SequenceDatasetError):
        load_sequence_dataset(folder)


def test_writing_refuses_a_catalog_whose_vectors_do_not_match(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"catalog_vectors: must be \[12, d\]"):
        write_sequence_dataset(tmp_path / "x", EVENTS, PRODUCTS, _vectors(n=5), "1")
    with pytest.raises(ValueError, match="catalog_ids: product 'p0' appears twice"):
        write_sequence_dataset(tmp_path / "x", EVENTS, ["p0", "p0"], _vectors(n=2), "1")


def test_offline_figures_through_onnxruntime_match_the_training_ranking(tmp_path: Path) -> None:
    """The trainer's offline next-item figures (exported towers on onnxruntime) rank each
    held-out event exactly as the training code's full ranking does."""
    import torch

    from shared.evaluation.sequential import next_item_metrics
    from shared.training.job import next_item_offline_metrics
    from shared.training.sequence import SequenceRecommender, SequenceSpec, rank_targets
    from shared.training.sequence_export import export_sequence_checkpoint

    rng = random.Random(11)
    catalog = [f"item-{i}" for i in range(60)]
    events = [
        _event(rng.choice(catalog), rng.choice((VIEW, CART)), s * 100 + k, user=f"u{s}")
        for s in range(40)
        for k in range(rng.randrange(3, 9))
    ]
    folder = tmp_path / "data"
    write_sequence_dataset(folder, events, catalog, _vectors(n=len(catalog)), "1")
    corpus, info = load_sequence_dataset(folder)
    assert info["dev_cases"] >= 20

    torch.manual_seed(0)
    model = SequenceRecommender(
        SequenceSpec(num_items=len(catalog), dim=DIM, heads=2, history_length=4, dropout=0.0)
    )
    with torch.no_grad():  # away from the identity start: every part of both towers counts
        for parameter in model.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    model.save(tmp_path / "checkpoint", catalog)
    export_sequence_checkpoint(tmp_path / "checkpoint", tmp_path / "export")

    ranks = rank_targets(
        model.eval(), torch.from_numpy(corpus.vectors), corpus.dev, torch.device("cpu")
    )
    assert len(set(ranks.tolist())) > 3  # a ranking, not a constant
    got = next_item_offline_metrics(tmp_path / "export", corpus)
    assert got == pytest.approx(next_item_metrics(ranks), abs=1e-9)
