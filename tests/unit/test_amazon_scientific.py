"""The Amazon Scientific loader: the format of the text-based recommendation papers, the
errors that name file and line, and the real files when they are beside the repository."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.data.amazon_scientific import SequenceDataError, load_sequences, read_cases
from shared.paths import shared_data_dir


def _write(folder: Path, train: str = "", valid: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "Scientific.item2index").write_text("B01\t0\nB02\t1\nB03\t2\n")
    (folder / "Scientific.user2index").write_text("U1\t0\nU2\t1\n")
    (folder / "Scientific.text").write_text(
        "item_id:token\ttext:token_seq\nB01\tSanding roll. Abrasives.\n"
        "B02\tNitrile gloves. Safety.\nB03\tDigital caliper. Measuring. \n"
    )
    header = "user_id:token\titem_id_list:token_seq\titem_id:token\n"
    (folder / "Scientific.train.inter").write_text(
        header + (train or "0\t0\t1\n0\t0 1\t2\n1\t2\t0\n")
    )
    (folder / "Scientific.valid.inter").write_text(header + (valid or "0\t0 1 2\t0\n1\t2 0\t1\n"))
    return folder


def test_training_histories_are_each_shoppers_longest_prefix(tmp_path: Path) -> None:
    data = load_sequences(_write(tmp_path))
    assert data.item_ids == ("B01", "B02", "B03")
    assert data.texts[2] == "Digital caliper. Measuring."
    assert data.train == ((0, 1, 2), (2, 0))
    assert [(c.history, c.target) for c in data.valid] == [((0, 1, 2), 0), ((2, 0), 1)]
    assert len(data.fingerprint) == 16


def test_bad_rows_name_file_and_line(tmp_path: Path) -> None:
    with pytest.raises(SequenceDataError, match=r"train.inter:3: item index 7"):
        load_sequences(_write(tmp_path / "a", train="0\t0\t1\n0\t0 1\t7\n"))
    with pytest.raises(SequenceDataError, match=r"valid.inter:2: expected"):
        load_sequences(_write(tmp_path / "b", valid="0\tx y\t1\n"))
    with pytest.raises(SequenceDataError, match="missing"):
        read_cases(tmp_path / "nothing.inter", 3)


def test_the_real_files() -> None:
    folder = shared_data_dir() / "amazon_scientific"
    if not folder.is_dir():
        pytest.skip(f"{folder} is not here (the team's data sits beside the repository)")
    data = load_sequences(folder)
    assert data.num_items == 4385
    assert len(data.valid) == 8442
    assert len(data.train) == 8442
    # Every valid history extends the training sequence by its last training target.
    first = data.valid[0]
    assert first.history[: len(data.train[0])] == data.train[0]
