"""The sequence recommender's pieces: event inputs, causality and padding, the item tower
for unknown products, training on a SYNTHETIC chain, the refused options, checkpoints."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from shared.evaluation.sequential import next_item_metrics
from shared.recommendation.events import CART, PURCHASE, VIEW
from shared.recommendation.sequence_inputs import (
    GAP_BUCKETS,
    basket_sources,
    gap_buckets,
    left_padded,
)
from shared.training.hyperparams import HyperparameterError, Hyperparameters
from shared.training.sequence import (
    DevCase,
    History,
    SequenceCorpus,
    SequenceRecommender,
    SequenceSpec,
    augment_history,
    rank_targets,
    starting_model,
    train_sequence_model,
)

DIM = 16


def _hp(**changes: object) -> Hyperparameters:
    base = {"sequence_heads": 2, "history_length": 8, "epochs": 1}
    base.update(changes)
    return Hyperparameters.for_kind("sequence_recommender", base)


def test_gap_buckets_mark_visits() -> None:
    minute, day = 60.0, 86400.0
    buckets = gap_buckets([0.0, 30.0, 30.0 + 5 * minute, 30.0 + 5 * minute + 40 * day], 4)
    assert buckets[0] == 0  # nothing before the first event
    assert buckets[1] < buckets[2] < buckets[3] <= GAP_BUCKETS - 1
    assert gap_buckets(None, 3).tolist() == [0, 0, 0]
    # Out-of-order times never make a negative gap.
    assert gap_buckets([100.0, 50.0], 2).tolist() == [0, 1]


def test_left_padded_keeps_the_newest_events() -> None:
    rows, kinds, gaps, mask = left_padded([([1, 2, 3], [0, 1, 2], [0, 1, 1]), ([7], [2], [0])], 2)
    assert rows.tolist() == [[2, 3], [-1, 7]]
    assert kinds.tolist() == [[1, 2], [0, 2]]
    assert gaps.tolist() == [[1, 1], [0, 0]]
    assert mask.tolist() == [[1, 1], [0, 1]]


def test_a_basket_is_predicted_from_the_state_before_it() -> None:
    minute, day = 60.0, 86400.0
    # Two baskets of purchases (lines at one time), then a view and a cart the next day.
    times = [0.0, 0.0, 0.0, day, day + 10, day + 20, 2 * day, 2 * day + 30]
    kinds = [[PURCHASE] * 6 + [VIEW, CART]]
    gaps = [gap_buckets(times, len(times)).tolist()]
    sources = basket_sources(np.array(kinds), np.array(gaps), np.ones((1, 8)))
    # The first basket has nothing before it; the second is read from its first basket's
    # last line; a view or cart is its own basket, even within a minute of the one before.
    assert sources.tolist() == [[-1, -1, -1, 2, 2, 2, 5, 6]]
    # Left padding is no event: a basket right after it has no source.
    padded = basket_sources(
        np.array([[0, PURCHASE, PURCHASE]]), np.array([[0, 0, 1]]), np.array([[0, 1, 1]])
    )
    assert padded.tolist() == [[-1, -1, -1]]
    # Purchases a few minutes apart are two baskets.
    apart = gap_buckets([0.0, 5 * minute], 2)
    assert basket_sources(np.array([[PURCHASE] * 2]), apart[None], np.ones((1, 2))).tolist() == [
        [-1, 0]
    ]


def _basket_corpus(groups: int = 12, size: int = 3, histories: int = 300) -> SequenceCorpus:
    """SYNTHETIC orders: a basket is one of ``groups`` fixed product sets, its lines in a
    random order at one time; each order's basket follows the one before on a fixed chain.
    Dev cases read whole baskets and target a product of the next basket."""
    rng = random.Random(5)
    items = groups * size
    cycle = list(range(groups))  # one cycle: no basket follows itself
    rng.shuffle(cycle)
    successor = {cycle[i - 1]: cycle[i] for i in range(groups)}
    vectors = np.random.default_rng(5).normal(size=(items, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    day = 86400.0

    def orders(count: int) -> tuple[list[int], list[float]]:
        group, rows, times = rng.randrange(groups), [], []
        for order in range(count):
            lines = [group * size + k for k in range(size)]
            rng.shuffle(lines)
            rows += lines
            times += [order * day] * size
            group = successor[group]
        return rows, times

    def history(rows: list[int], times: list[float]) -> History:
        gaps = gap_buckets(times, len(times)).tolist()
        return History(tuple(rows), (PURCHASE,) * len(rows), tuple(gaps))

    train = [history(*orders(rng.randint(1, 4))) for _ in range(histories)]
    dev = []
    for _ in range(60):
        rows, times = orders(rng.randint(2, 4))
        dev.append(DevCase(history(rows[:-size], times[:-size]), rng.choice(rows[-size:])))
    return SequenceCorpus([f"p{i}" for i in range(items)], vectors, train, dev)


def test_training_on_baskets_learns_the_next_basket(tmp_path: Path) -> None:
    corpus = _basket_corpus()
    # Some histories are one basket (nothing to predict), and augmentation can crop a
    # history to one basket: training neither fails nor learns from them.
    assert any(len(set(h.gaps[1:])) == 1 and len(h.rows) == 3 for h in corpus.train)
    hp = _hp(
        epochs=8,
        batch_size=16,
        learning_rate=3e-3,
        early_stopping_patience=0,
        augment_prob=0.5,
        basket_targets=True,
    )
    result = train_sequence_model(corpus, tmp_path / "baskets", hp)
    # With the basket's own products excluded, the next basket's three fill the top 3.
    assert result.dev_metrics["recall@10"] > 0.9


def _model(num_items: int = 10, **spec: object) -> SequenceRecommender:
    torch.manual_seed(0)
    model = SequenceRecommender(
        SequenceSpec(num_items=num_items, dim=DIM, heads=2, history_length=8, **spec)
    )
    # Non-zero embeddings of positions, kinds and gaps, so the test sees them at work.
    for table in (model.position, model.kind, model.gap):
        torch.nn.init.normal_(table.weight, std=0.3)
    return model.eval()


def _history_tensors(model: SequenceRecommender, rows: list[list[int]], width: int):
    vectors = torch.nn.functional.normalize(torch.randn(model.spec.num_items, DIM), dim=1)
    table = model.items(vectors, torch.arange(model.spec.num_items))
    arrays = left_padded([(r, [PURCHASE] * len(r), [1] * len(r)) for r in rows], width)
    rows_t, kinds, gaps, mask = (torch.from_numpy(a) for a in arrays)
    if rows_t.shape[1] < width:  # extra left padding on purpose
        pad = width - rows_t.shape[1]
        rows_t = torch.nn.functional.pad(rows_t, (pad, 0), value=-1)
        kinds, gaps, mask = (torch.nn.functional.pad(t, (pad, 0)) for t in (kinds, gaps, mask))
    return table[rows_t.clamp(min=0)] * mask[..., None], kinds, gaps, mask


def test_states_are_causal_and_padding_changes_nothing() -> None:
    model = _model()
    torch.manual_seed(1)
    emb, kinds, gaps, mask = _history_tensors(model, [[1, 2, 3, 4]], 4)
    with torch.inference_mode():
        before = model.states(emb, kinds, gaps, mask)
        changed = emb.clone()
        changed[0, 3] = -changed[0, 3]  # the newest event differs
        after = model.states(changed, kinds, gaps, mask)
    assert torch.allclose(before[0, :3], after[0, :3], atol=1e-6), "earlier states saw the future"
    assert not torch.allclose(before[0, 3], after[0, 3])
    torch.manual_seed(1)
    padded = _history_tensors(model, [[1, 2, 3, 4]], 7)
    with torch.inference_mode():
        plain = model.shopper(emb, kinds, gaps, mask)
        with_padding = model.shopper(*padded)
    assert torch.allclose(plain, with_padding, atol=1e-5)
    assert torch.allclose(plain.norm(dim=1), torch.ones(1), atol=1e-5)


def test_kind_and_order_matter() -> None:
    model = _model()
    torch.manual_seed(2)
    emb, kinds, gaps, mask = _history_tensors(model, [[1, 2, 3]], 3)
    with torch.inference_mode():
        base = model.shopper(emb, kinds, gaps, mask)
        viewed = model.shopper(emb, torch.full_like(kinds, VIEW), gaps, mask)
        reordered = model.shopper(emb.flip(1), kinds, gaps, mask)
    assert not torch.allclose(base, viewed)
    assert not torch.allclose(base, reordered)


def test_an_unknown_product_is_scored_by_its_text_alone() -> None:
    model = _model(num_items=4)
    with torch.no_grad():
        model.residuals.weight[:4].normal_()
        model.adapter.weight.normal_(std=0.1)
    text = torch.nn.functional.normalize(torch.randn(2, DIM), dim=1)
    with torch.inference_mode():
        unknown = model.items(text, torch.tensor([-1, 99]))
        known = model.items(text, torch.tensor([0, 1]))
        adapted = model.adapter(text)
    assert torch.allclose(unknown, adapted)
    assert not torch.allclose(known, adapted)
    assert model.residuals.weight[4].abs().sum() == 0  # the "unknown" row


def _chain_corpus(num_items: int = 40, histories: int = 300) -> SequenceCorpus:
    """SYNTHETIC: shoppers walk a fixed random successor chain over the items."""
    rng = random.Random(3)
    successor = list(range(num_items))
    rng.shuffle(successor)
    vectors = np.random.default_rng(3).normal(size=(num_items, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)

    def walk(length: int) -> list[int]:
        item = rng.randrange(num_items)
        out = [item]
        for _ in range(length - 1):
            item = successor[item]
            out.append(item)
        return out

    train = [History.of(walk(rng.randint(3, 7)), CART) for _ in range(histories)]
    dev = []
    for _ in range(60):
        steps = walk(rng.randint(2, 5))
        dev.append(DevCase(History.of(steps[:-1], CART), steps[-1]))
    return SequenceCorpus([f"p{i}" for i in range(num_items)], vectors, train, dev)


def test_training_learns_what_comes_next(tmp_path: Path) -> None:
    corpus = _chain_corpus()
    hp = _hp(epochs=6, batch_size=32, learning_rate=3e-3, early_stopping_patience=0)
    untrained = starting_model(corpus, hp)
    before = next_item_metrics(
        rank_targets(untrained, torch.from_numpy(corpus.vectors), corpus.dev, torch.device("cpu"))
    )
    result = train_sequence_model(corpus, tmp_path, hp)
    assert result.dev_metrics["recall@10"] > max(0.6, before["recall@10"] + 0.3)
    model, keys = SequenceRecommender.load(result.checkpoint_dir)
    assert keys == corpus.item_keys
    assert (tmp_path / "history.json").is_file()
    again = next_item_metrics(
        rank_targets(model, torch.from_numpy(corpus.vectors), corpus.dev, torch.device("cpu"))
    )
    assert again["recall@10"] == pytest.approx(result.dev_metrics["recall@10"])


def test_id_only_baseline_and_sampled_negatives_train(tmp_path: Path) -> None:
    corpus = _chain_corpus()
    hp = _hp(epochs=2, batch_size=32, sampled_negatives=8, learning_rate=3e-3)
    result = train_sequence_model(corpus, tmp_path / "text", hp)
    assert np.isfinite(result.dev_metrics["ndcg@10"])
    baseline = SequenceCorpus(corpus.item_keys, None, corpus.train, corpus.dev)
    run = train_sequence_model(baseline, tmp_path / "ids", _hp(epochs=1), id_only=True, dim=16)
    model, _ = SequenceRecommender.load(run.checkpoint_dir)
    assert not model.spec.text and model.adapter is None


def test_continuing_keeps_residuals_by_product_id(tmp_path: Path) -> None:
    corpus = _chain_corpus(num_items=6, histories=40)
    hp = _hp(epochs=1)
    first = train_sequence_model(corpus, tmp_path / "v1", hp)
    old, _ = SequenceRecommender.load(first.checkpoint_dir)
    # The store dropped p0 and added p9; p1..p5 keep their learned residuals.
    keys = [f"p{i}" for i in range(1, 6)] + ["p9"]
    vectors = np.vstack([corpus.vectors[1:], corpus.vectors[:1]])
    moved = SequenceCorpus(keys, vectors, [History.of([0, 1, 2], CART)], corpus.dev[:0])
    model = starting_model(moved, hp, init_checkpoint=first.checkpoint_dir)
    assert torch.equal(model.residuals.weight[0], old.residuals.weight[1])
    assert torch.count_nonzero(model.residuals.weight[5]) == 0


@pytest.mark.parametrize(
    ("name", "value"), [("lora", "true"), ("fgm_epsilon", "0.5"), ("freeze_layers", "2")]
)
def test_options_of_text_encoders_are_refused(tmp_path: Path, name: str, value: str) -> None:
    with pytest.raises(HyperparameterError, match=name):
        train_sequence_model(_chain_corpus(), tmp_path, _hp(**{name: value}))


def test_bad_sequence_hyperparameters_name_the_field() -> None:
    with pytest.raises(HyperparameterError, match="sequence_heads"):
        Hyperparameters.for_kind("sequence_recommender", {"sequence_heads": "5"})
    with pytest.raises(HyperparameterError, match="history_length"):
        Hyperparameters.for_kind("sequence_recommender", {"history_length": "1"})


def test_augmentation_crops_drops_and_reorders() -> None:
    rng = random.Random(0)
    history = History.of(list(range(10)), VIEW)
    seen = set()
    for _ in range(200):
        out = augment_history(history, rng, 1.0)
        assert len(out.rows) >= 2 and set(out.rows) <= set(history.rows)
        assert len(out.rows) == len(out.kinds) == len(out.gaps)
        seen.add(out.rows)
    assert any(len(rows) == 10 and rows != history.rows for rows in seen), "no reorder"
    assert any(len(rows) < 10 and rows[-1] == 9 and rows[0] == 0 for rows in seen), "no drop"
    assert any(rows[0] > 0 for rows in seen), "no crop"
    assert augment_history(history, rng, 0.0) is history


def test_next_item_metrics() -> None:
    metrics = next_item_metrics(np.array([0, 9, 10, 49, 50]))
    assert metrics["recall@10"] == pytest.approx(2 / 5)
    assert metrics["recall@50"] == pytest.approx(4 / 5)
    expected = (1.0 + 1 / np.log2(11)) / 5
    assert metrics["ndcg@10"] == pytest.approx(expected)
    assert next_item_metrics(np.array([]))["ndcg@50"] == 0.0
