"""Erasure through real servers: feedback's DeleteShopperEvents (port 0, a real SQLite
file) records the erasure; the trainer (its own server, the same database as in one pod
or two) removes the shopper's history from a sequence training folder under its training
dir, keeps the other shoppers', and the folder still loads.

The folder is written by the function the trainer's StartTraining uses
(``write_sequence_dataset`` with the store's ``last_erasure()``): writing it through
StartTraining would need a catalog with text vectors, 20 shoppers and a training job.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from shopsense.feedback.v1 import feedback_service_pb2 as fpb
from shopsense.feedback.v1 import feedback_service_pb2_grpc as fpb_grpc

from shared.recommendation.events import Interaction
from shared.storage.database import create_db_engine
from shared.storage.feedback import FeedbackStore
from shared.training.sequence_data import (
    HISTORIES_FILE,
    INFO_FILE,
    read_sequence_dataset,
    write_sequence_dataset,
)
from tests.integration.conftest import NOWHERE
from tests.support import wait_until

pytestmark = pytest.mark.integration

PRODUCTS = [f"p{i}" for i in range(6)]
SHOPPERS = {"alice": ["p0", "p1", "p2"], "bob": ["p3", "p4"], "carol": ["p5", "p0"]}


def _events() -> list[fpb.Event]:
    events = []
    for user, products in SHOPPERS.items():
        for i, product in enumerate(products):
            stamp = Timestamp()
            stamp.FromDatetime(datetime.now(UTC) - timedelta(minutes=10 - i))
            events.append(
                fpb.Event(
                    event_id=f"{user}-{i}",
                    type=fpb.EVENT_TYPE_CLICK,
                    timestamp=stamp,
                    user_id=user,
                    session_id=f"{user}-session",
                    product_id=product,
                )
            )
    return events


def _interactions(store: FeedbackStore) -> list[Interaction]:
    return [
        Interaction(row.product_id, 0, row.occurred_at.timestamp(), 1, row.user_id or "", "")
        for user in SHOPPERS
        for row in store.shopper_events(user_id=user)
    ]


def test_erasure_removes_the_shoppers_history_from_training_folders(
    start_stack, tmp_path: Path
) -> None:
    stack = start_stack(
        ["feedback", "trainer"],
        state=tmp_path / "state",
        settings={"erasure_interval_s": 0.2},
        only={"feedback": {"retrieval_target": NOWHERE}},
    )
    feedback = stack.stub("feedback", fpb_grpc.FeedbackServiceStub)
    recorded = feedback.RecordEvents(fpb.RecordEventsRequest(events=_events()), timeout=30)
    assert recorded.accepted == 7, recorded
    trainer = stack.settings["trainer"]
    assert trainer.feedback_db_url == stack.settings["feedback"].feedback_db_url
    store = FeedbackStore(create_db_engine(trainer.feedback_db_url))
    folder = Path(trainer.training_dir) / "sequence-feedback-test"
    write_sequence_dataset(
        folder,
        _interactions(store),
        PRODUCTS,
        np.eye(len(PRODUCTS), dtype=np.float32),
        "1",
        erasures_through=store.last_erasure(),
    )
    assert [h[0][0] for h in read_sequence_dataset(folder).histories] == [0, 3, 5]

    shopper = fpb.ShopperRequest(user_id="alice")
    assert feedback.DeleteShopperEvents(shopper, timeout=30).deleted == 3

    def erased() -> bool:
        info = json.loads((folder / INFO_FILE).read_text(encoding="utf-8"))
        return info["erasures_through"] >= 1

    wait_until(erased, "the trainer applied the erasure", timeout=30)
    data = read_sequence_dataset(folder)  # still loads: counts and fingerprint follow
    assert [h[0][0] for h in data.histories] == [3, 5]  # bob's and carol's stay
    assert data.info["shoppers"] == 2 and data.info["erased_histories"] == 1
    assert len((folder / HISTORIES_FILE).read_text(encoding="utf-8").splitlines()) == 2
    # Repeated, the erasure changes nothing more.
    assert feedback.DeleteShopperEvents(shopper, timeout=30).deleted == 0
    wait_until(
        lambda: json.loads((folder / INFO_FILE).read_text())["erasures_through"] >= 2,
        "the trainer applied the repeat",
        timeout=30,
    )
    assert [h[0][0] for h in read_sequence_dataset(folder).histories] == [3, 5]
    store.engine.dispose()
