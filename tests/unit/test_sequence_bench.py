"""`shopsense recs bench` end to end on a tiny dataset in the Amazon Scientific format
(SYNTHETIC: shoppers walk a fixed chain of tool-shop items): both systems train, the JSON
lists every system on valid and test with the four figures, and a second run reuses the
models instead of training again."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from shared.cli.main import main as cli_main

ITEMS = [
    "nitrile gloves",
    "safety glasses",
    "digital caliper",
    "steel ruler",
    "sanding roll",
    "cordless drill",
    "drill bit set",
    "soldering iron",
    "solder wire",
    "multimeter",
    "wire stripper",
    "heat gun",
    "glue gun",
    "tape measure",
    "spirit level",
    "hex key set",
    "socket wrench",
    "torque wrench",
    "bench vise",
    "pipe cutter",
    "utility knife",
    "ear defenders",
    "dust mask",
    "work lamp",
    "extension cable",
    "cable ties",
    "zip bags",
    "label printer",
    "lab beaker",
    "pipette tips",
]


NUM_ITEMS, USERS = len(ITEMS), 150


def _dataset(folder: Path) -> Path:
    folder.mkdir()
    n = NUM_ITEMS
    (folder / "Scientific.item2index").write_text("".join(f"B{i:02d}\t{i}\n" for i in range(n)))
    (folder / "Scientific.text").write_text(
        "item_id:token\ttext:token_seq\n"
        + "".join(f"B{i:02d}\t{ITEMS[i]}. Industrial.\n" for i in range(n))
    )
    header = "user_id:token\titem_id_list:token_seq\titem_id:token\n"
    train, valid, test = [header], [header], [header]
    for user in range(USERS):
        walk = [(user + i) % n for i in range(3 + user % 3)]
        for end in range(1, len(walk)):
            train.append(f"{user}\t{' '.join(map(str, walk[:end]))}\t{walk[end]}\n")
        after = [(walk[-1] + 1) % n, (walk[-1] + 2) % n]
        valid.append(f"{user}\t{' '.join(map(str, walk))}\t{after[0]}\n")
        test.append(f"{user}\t{' '.join(map(str, walk + after[:1]))}\t{after[1]}\n")
    for name, rows in (("train", train), ("valid", valid), ("test", test)):
        (folder / f"Scientific.{name}.inter").write_text("".join(rows))
    (folder / "Scientific.user2index").write_text("".join(f"U{u}\t{u}\n" for u in range(USERS)))
    return folder


def test_bench_reports_both_systems_and_reuses_its_models(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _dataset(tmp_path / "data")
    out = tmp_path / "report.json"
    args = [
        "recs", "bench", "--data", str(data), "--test", str(data / "Scientific.test.inter"),
        "--json", str(out), "--work", str(tmp_path / "work"),
        "--set", "epochs=8", "--set", "history_length=8", "--set", "learning_rate=0.005",
        "--set", "batch_size=16", "--set", "early_stopping_patience=0",
    ]  # fmt: skip
    assert cli_main(args) == 0
    report = json.loads(out.read_text())
    rows = {(s["name"], s["split"]): s for s in report["systems"]}
    assert set(rows) == {
        (name, split)
        for name in ("sequence_recommender", "SASRec-ID", "popularity")
        for split in ("valid", "test")
    }
    for row in rows.values():
        for key in ("recall_at_10", "ndcg_at_10", "recall_at_50", "ndcg_at_50"):
            assert 0.0 <= row[key] <= 1.0
        assert row["recall_at_10"] <= row["recall_at_50"]
    # Everything is in the top 50 of thirty items; the ID baseline learns the walk
    # exactly (its items are free vectors); both were trained in this run.
    assert rows[("sequence_recommender", "valid")]["recall_at_50"] == 1.0
    assert rows[("SASRec-ID", "valid")]["recall_at_10"] >= 0.9
    assert rows[("sequence_recommender", "valid")]["train_seconds"] > 0
    assert rows[("popularity", "valid")]["train_seconds"] is None
    assert report["published"][2]["name"].startswith("VQ-Rec")
    capsys.readouterr()
    assert cli_main(args) == 0
    assert "reusing" in capsys.readouterr().out


def test_bench_names_a_broken_file(tmp_path: Path) -> None:
    data = _dataset(tmp_path / "data")
    (data / "Scientific.valid.inter").write_text("user_id:token\tx\n0\t1 2\t99\n")
    console = Console(record=True, width=400)
    import argparse

    from shared.bench.sequence import add_arguments, run_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--data", str(data), "--work", str(tmp_path / "w")])
    assert run_from_args(args, console) == 2
    assert "valid.inter:2: item index 99" in console.export_text()
