from __future__ import annotations

import threading

import numpy as np
import pytest

from shared.models.tokenization import Tokenizer

pytestmark = pytest.mark.unit

CLS, SEP, PAD = 101, 102, 0


def test_pads_to_longest_in_batch_not_max_length(tokenizer: Tokenizer) -> None:
    ids, mask = tokenizer.encode(["sofa", "a grey three seater sofa"], max_length=64)
    assert ids.dtype == np.int64 and mask.dtype == np.int64
    assert ids.shape == mask.shape == (2, 7)  # [CLS] a grey three seat ##er sofa [SEP]
    assert ids[0, 0] == CLS and ids[0, 2] == SEP
    assert (ids[0, 3:] == PAD).all() and (mask[0, 3:] == 0).all()
    assert mask[1].all()


def test_truncates_at_max_length_keeping_sep(tokenizer: Tokenizer) -> None:
    ids, mask = tokenizer.encode(["chair " * 100, "lamp"], max_length=16)
    assert ids.shape == (2, 16)
    assert ids[0, 0] == CLS and ids[0, -1] == SEP
    assert mask[0].sum() == 16 and mask[1].sum() == 3


def test_max_length_can_change_between_calls(tokenizer: Tokenizer) -> None:
    assert tokenizer.encode(["word " * 50], max_length=8)[0].shape == (1, 8)
    assert tokenizer.encode(["word " * 50], max_length=32)[0].shape == (1, 32)


def test_empty_batch(tokenizer: Tokenizer) -> None:
    ids, mask = tokenizer.encode([], max_length=8)
    assert ids.shape == mask.shape == (0, 0)


def test_pairs_have_segments_and_are_truncated(tokenizer: Tokenizer) -> None:
    ids, mask, types = tokenizer.encode_pairs(
        ["red sofa", "lamp"], ["a large grey sofa with " + "soft " * 40, "desk lamp"], 24
    )
    assert ids.shape == mask.shape == types.shape == (2, 24)
    row = ids[0].tolist()
    assert row[0] == CLS and row.count(SEP) == 2 and row[-1] == SEP
    first_sep = row.index(SEP)
    assert (types[0, : first_sep + 1] == 0).all() and (types[0, first_sep + 1 :] == 1).all()
    # The short pair is padded to the long one: padding has mask 0.
    assert mask[1].sum() < 24 and (ids[1, mask[1].sum() :] == PAD).all()


def test_pairs_must_have_equal_lengths(tokenizer: Tokenizer) -> None:
    with pytest.raises(ValueError):
        tokenizer.encode_pairs(["a"], ["b", "c"], 16)


def test_threads_with_different_max_lengths_do_not_interfere(tokenizer: Tokenizer) -> None:
    text = ["table " * 80]
    errors: list[str] = []

    def work(max_length: int) -> None:
        for _ in range(200):
            width = tokenizer.encode(text, max_length)[0].shape[1]
            if width != max_length:
                errors.append(f"{max_length}: got {width}")

    threads = [threading.Thread(target=work, args=(n,)) for n in (8, 16, 24, 32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
