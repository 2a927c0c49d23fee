"""Training judgments from clicks: the click model removes position bias, and the folder it
writes trains the cross-encoder on the products shoppers saw."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from shopsense.feedback.v1 import feedback_service_pb2 as fpb

from shared.contracts.feedback import validate_event
from shared.experiments.attribution import Attribution, AttributionSigner
from shared.storage.database import create_db_engine
from shared.storage.feedback import FeedbackStore
from shared.training.clicks import (
    DEFAULT_ETA,
    Impression,
    fit_click_model,
    query_id,
    read_impressions,
    write_click_dataset,
)
from shared.training.data import DatasetError, load_training_data, rank_groups

pytestmark = pytest.mark.unit

ETA = 0.9  # the simulated shoppers' position bias: examination(k) = k ** -0.9
ATTRACTION = (0.55, 0.15, 0.02)


def _logged(seed: int, explore: float, pages: int = 6000, n_queries: int = 300):
    """Pages of a fixed ranking (products 0..9 in order), ``explore`` of them shuffled, and
    the hidden attractiveness of every (query, product)."""
    rng = random.Random(seed)
    truth = {(f"q{q}", str(d)): rng.choice(ATTRACTION) for q in range(n_queries) for d in range(10)}
    impressions = []
    for _ in range(pages):
        query = f"q{rng.randrange(n_queries)}"
        order = [str(d) for d in range(10)]
        explored = rng.random() < explore
        if explored:
            rng.shuffle(order)
        for position, product in enumerate(order, start=1):
            seen = rng.random() < position**-ETA
            liked = rng.random() < truth[(query, product)]
            impressions.append(Impression(query, product, position, seen and liked, 0, explored))
    return impressions, truth


def test_position_bias_is_measured_on_the_explored_pages() -> None:
    etas = []
    for seed in range(3):
        impressions, _ = _logged(seed, explore=0.3)
        fit = fit_click_model(impressions, pages=6000)
        assert fit.measured
        etas.append(fit.eta)
        assert fit.examination[0] == 1.0
        assert fit.examination[4] == pytest.approx(5**-fit.eta)
    assert np.mean(etas) == pytest.approx(ETA, abs=0.08)


def test_attractiveness_does_not_depend_on_where_the_ranking_put_a_product() -> None:
    impressions, truth = _logged(4, explore=0.1, pages=12000, n_queries=100)
    fit = fit_click_model(impressions, pages=12000)
    top, low = [], []
    raw_top, raw_low = [], []
    for j in fit.judgments:
        if truth[(j.query, j.product_id)] != ATTRACTION[0]:
            continue
        (top if j.product_id == "0" else low if j.product_id == "7" else []).append(
            j.attractiveness
        )
        ctr = j.clicks / j.impressions
        (raw_top if j.product_id == "0" else raw_low if j.product_id == "7" else []).append(ctr)
    # Raw click rates put position 1 far above position 8 (1 vs 8^-0.9 = 0.15 examined)...
    assert np.mean(raw_low) < 0.35 * np.mean(raw_top)
    # ...the click model gives equally attractive products the same figure within 25%.
    assert np.mean(low) == pytest.approx(np.mean(top), rel=0.25)
    # and orders the three kinds of products as the hidden truth does.
    means = [
        np.mean([j.gain for j in fit.judgments if truth[(j.query, j.product_id)] == a])
        for a in ATTRACTION
    ]
    assert means[0] > means[1] > means[2]


def test_without_explored_clicks_position_bias_is_assumed_and_said_so() -> None:
    impressions, _ = _logged(5, explore=0.0, pages=500)
    fit = fit_click_model(impressions, pages=500)
    assert not fit.measured and fit.explored_clicks == 0
    assert fit.eta == DEFAULT_ETA
    assert fit.examination[1] == pytest.approx(0.5)


def _ts(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def test_impressions_are_read_back_from_the_feedback_store(tmp_path: Path) -> None:
    signer = AttributionSigner("unit")
    now = datetime.now(UTC)
    store = FeedbackStore(create_db_engine(f"sqlite:///{tmp_path / 'feedback.db'}"))

    def token(rid: str, query: str, explored: bool = False) -> str:
        return signer.encode(Attribution(rid, "control", {}, query=query, explored=explored))

    events = []
    pages = {"r1": ("Leather  Sofa", False), "r2": ("leather sofa", True)}
    for rid, (query, explored) in pages.items():
        for pos, pid in enumerate(("p1", "p2", "p3"), start=1):
            events.append(("impression", f"{rid}-i{pos}", pid, pos, token(rid, query, explored)))
    events += [
        ("click", "r1-c", "p2", 2, token("r1", "Leather  Sofa")),
        ("add_to_cart", "r1-a", "p2", 2, token("r1", "Leather  Sofa")),
        ("click", "r2-c", "p3", 3, token("r2", "leather sofa", True)),
        # no token: no query, left out
        ("impression", "x-i", "p1", 1, ""),
    ]
    kinds = {
        "impression": fpb.EVENT_TYPE_IMPRESSION,
        "click": fpb.EVENT_TYPE_CLICK,
        "add_to_cart": fpb.EVENT_TYPE_ADD_TO_CART,
    }
    valid = [
        validate_event(
            fpb.Event(
                event_id=eid,
                type=kinds[kind],
                timestamp=_ts(now - timedelta(seconds=5)),
                user_id="u1",
                product_id=pid,
                attribution_token=tok,
                position=pos,
            ),
            signer,
            now,
        )
        for kind, eid, pid, pos, tok in events
    ]
    store.record(valid)
    impressions, pages_read = read_impressions(store.engine)
    assert pages_read == 2
    assert len(impressions) == 6
    assert {i.query for i in impressions} == {"leather sofa"}  # one query, normalised
    by_key = {(i.product_id, i.position, i.explored): i for i in impressions}
    assert by_key[("p2", 2, False)].clicked and by_key[("p2", 2, False)].conversions == 1
    assert by_key[("p3", 3, True)].clicked and by_key[("p3", 3, True)].conversions == 0
    assert sum(i.clicked for i in impressions) == 2
    later = read_impressions(store.engine, since=now + timedelta(seconds=1))
    assert later == ([], 0)


def _catalog(folder: Path, ids: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = ["product_id\tproduct_name\tproduct_class"]
    # every product matches every query "qN" (BM25 puts them all among the candidates)
    words = " ".join(f"q{n}" for n in range(40))
    rows += [f"{pid}\tproduct {pid} {words}\tSofas" for pid in ids]
    (folder / "product.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return folder


def test_the_judgments_folder_trains_on_what_shoppers_saw(tmp_path: Path) -> None:
    impressions, _ = _logged(6, explore=0.1, pages=3000, n_queries=40)
    fit = fit_click_model(impressions, pages=3000)
    # Product "9" left the catalog since: its judgments are dropped.
    catalog = _catalog(tmp_path / "catalog", [str(d) for d in range(9)] + ["other"])
    queries, judgments = write_click_dataset(fit, catalog, tmp_path / "fb", min_impressions=10)
    assert queries == 40
    assert judgments == 40 * 9
    data = load_training_data(tmp_path / "fb", kind="cross_encoder")
    gains = data.gains[query_id("q0")]
    assert set(gains) == {str(d) for d in range(9)}
    expected = {j.product_id: j.gain for j in fit.judgments if j.query == "q0"}
    for pid, gain in gains.items():
        assert gain == pytest.approx(expected[pid], abs=1e-6)
    groups = rank_groups(data, group_size=5, max_examples=0, seed=1)
    other = data.row_of["other"]
    for group in groups:
        gains_of = dict(zip(group.rows, group.gains, strict=True))
        assert group.gains[0] == max(gains_of.values())  # the best product leads each group
        assert len(group.rows) <= 5
        # a candidate the shoppers never saw may fill a group, as a product worth nothing
        assert gains_of.get(other, 0.0) == 0.0
    # every judged product of a training query is in one of its groups, with its gain
    train_q = data.train_queries[0]
    mine = [g for g in groups if g.query == train_q.text]
    rows = {r for g in mine for r in g.rows}
    assert rows - {other} == {data.row_of[str(d)] for d in range(9)}
    assert any(other in g.rows for g in mine)
    assert "Examination by position (fitted)" in (tmp_path / "fb" / "README.txt").read_text()


def test_a_gain_outside_0_to_1_names_the_line(tmp_path: Path) -> None:
    folder = _catalog(tmp_path / "d", ["a", "b"])
    (folder / "query.csv").write_text("query_id\tquery\nq\tsofa\n", encoding="utf-8")
    (folder / "label.csv").write_text(
        "query_id\tproduct_id\tlabel\tgain\nq\ta\tExact\t0.9\nq\tb\tPartial\t1.5\n",
        encoding="utf-8",
    )
    with pytest.raises(DatasetError, match=r"label.csv: line 3 has gain 1.5, outside \[0, 1\]"):
        load_training_data(folder, kind="cross_encoder")


def test_offline_scores_of_feedback_judgments_leave_unjudged_products_out() -> None:
    from shared.data.dataset import Query
    from shared.training.offline_eval import evaluate_pipeline

    class Ranking:  # stands in for the pipeline: the unit here is the scoring
        def search(self, text: str) -> dict[str, list[str]]:
            return {
                stage: ["new", "a", "b"] for stage in ("bm25", "dense", "retrieval", "pipeline")
            }

    labels = {"q": {"a": "Exact", "b": "Irrelevant"}}
    queries = [Query("q", "sofa")]
    plain = evaluate_pipeline(Ranking(), queries, labels)
    condensed = evaluate_pipeline(Ranking(), queries, labels, condensed=True)
    assert plain["pipeline/mrr@10"] == pytest.approx(0.5)  # "new" was never shown: counted 0
    assert condensed["pipeline/mrr@10"] == 1.0 and condensed["pipeline/ndcg@10"] == 1.0
