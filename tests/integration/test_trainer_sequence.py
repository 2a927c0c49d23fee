"""The trainer retrains the sequence_recommender from the shoppers' feedback, with real
parts: a real retrieval over a real Triton (MiniLM text vectors of a small synthetic
catalog, read back through ExportCatalog), a real SQLite feedback database written by the
feedback store, the real trainer on port 0 with its registry file and real training,
export and onnxruntime evaluation in worker processes.

Too little feedback in the window is refused before a job exists, naming the counts; enough
gives a registered version whose export holds both towers; once it serves, the next run
(through ``shopsense models retrain --model sequence_recommender``) starts from it and is
measured against it on the same held-out events.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from shopsense.trainer.v1 import trainer_service_pb2 as pb
from shopsense.trainer.v1 import trainer_service_pb2_grpc as pb_grpc

from shared.cli.main import main
from shared.cli.retrain import feedback_request
from shared.data.synthetic import generate_store
from shared.models.kinds import SEQUENCE_RECOMMENDER
from shared.models.triton_client import TextEncoderClient
from shared.storage.database import create_db_engine
from shared.storage.feedback import FeedbackStore, ValidEvent
from shared.storage.registry import ModelRegistry
from shared.training.sequence_data import HISTORIES_FILE, INFO_FILE
from tests.integration.conftest import NOWHERE, Stack

pytestmark = pytest.mark.integration

MODEL = SEQUENCE_RECOMMENDER
CATALOG = generate_store(48, 4, seed=21).products
# A few steps on a few histories: the point is the machinery, not the model's quality.
TINY = {"epochs": "1", "history_length": "8", "batch_size": "8"}
JOB_TIMEOUT_S = 300.0
NOW = datetime.now(UTC)
# The window the jobs train on: the recent shoppers, not the old ones.
SINCE = NOW - timedelta(days=1)
RECENT_SHOPPERS, OLD_SHOPPERS = 30, 5


def _shopper_events() -> list[ValidEvent]:
    """Recent shoppers each walk 4-6 products of one aisle (eight neighbouring products;
    a view each, a cart and a purchase of the last), with a reload, a product the catalog
    no longer has and an impression (not an interaction) on the way; half are signed in,
    half anonymous. Old shoppers (30 days ago) viewed three products each."""
    ids = [p.product_id for p in CATALOG]
    aisles = [ids[start : start + 8] for start in range(0, len(ids) - 7, 8)]
    events: list[ValidEvent] = []

    def add(kind: str, product: str, at: datetime, user: str | None, session: str) -> None:
        events.append(
            ValidEvent(
                f"ev-{len(events)}", kind, at, NOW, product, user_id=user, session_id=session
            )
        )

    for s in range(RECENT_SHOPPERS):
        items = aisles[s % len(aisles)]
        walk = [items[(s + k) % len(items)] for k in range(4 + s % 3)]
        user = f"shopper-{s}" if s % 2 else None
        session = f"visit-{s}"
        start = NOW - timedelta(hours=2) + timedelta(minutes=s)
        steps = [
            ("impression", walk[0]),
            ("click", walk[0]),
            ("click", walk[0]),  # a reload: collapsed
            ("click", "discontinued-7"),  # not in the catalog: dropped
            *(("click", product) for product in walk[1:]),
            ("add_to_cart", walk[-1]),
            ("purchase", walk[-1]),
        ]
        for k, (kind, product) in enumerate(steps):
            add(kind, product, start + timedelta(seconds=20 * k), user, session)
    for s in range(OLD_SHOPPERS):
        items = aisles[0]
        for k in range(3):
            at = NOW - timedelta(days=30) + timedelta(minutes=k)
            add("click", items[(s + k) % len(items)], at, None, f"old-{s}")
    return events


@pytest.fixture(scope="module")
def stack(start_stack, triton_server, tokenizer, tmp_path_factory) -> Iterator[Stack]:
    repository = tmp_path_factory.mktemp("sequence-repository")
    encoder = TextEncoderClient(triton_server.grpc_url, tokenizer)
    # The trainer has no Triton (the discard port): these jobs register, they never publish.
    with start_stack(
        ["retrieval", "trainer"],
        triton_url=triton_server.grpc_url,
        settings={"grpc_workers": 8},
        only={"trainer": {"triton_url": NOWHERE, "triton_models": repository}},
        using={"retrieval": {"encoder": encoder}},
    ) as stack:
        stack.load_catalog(CATALOG)
        store = FeedbackStore(create_db_engine(stack.settings["trainer"].feedback_db_url))
        assert all(store.record(_shopper_events()))
        store.engine.dispose()
        yield stack


def _trainer(stack: Stack) -> pb_grpc.TrainerServiceStub:
    return stack.stub("trainer", pb_grpc.TrainerServiceStub)


def _registry(stack: Stack) -> ModelRegistry:
    return ModelRegistry(create_db_engine(stack.settings["trainer"].registry_db_url))


def _watch(stub: pb_grpc.TrainerServiceStub, job_id: str) -> pb.Job:
    job = None
    for reply in stub.WatchJob(pb.WatchJobRequest(job_id=job_id), timeout=JOB_TIMEOUT_S):
        job = reply.job
    assert job is not None
    return job


def _feedback_folders(stack: Stack) -> list[Path]:
    return sorted(Path(stack.settings["trainer"].training_dir).glob("sequence-feedback-*"))


def test_too_little_feedback_is_refused_naming_the_counts(stack: Stack) -> None:
    stub = _trainer(stack)
    # Up to ten days ago: only the old shoppers, three views each.
    request = feedback_request(None, overrides=TINY, model=MODEL)
    request.feedback.until.FromDatetime(NOW - timedelta(days=10))
    with pytest.raises(grpc.RpcError) as refused:
        stub.StartTraining(request, timeout=120)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    details = refused.value.details()
    counts = f"{OLD_SHOPPERS} shoppers have 2 or more events on catalog products (need 20)"
    assert counts in details, details
    assert f"the window holds {3 * OLD_SHOPPERS} views, carts and purchases" in details, details
    assert _feedback_folders(stack) == []  # nothing left behind
    assert list(stub.ListJobs(pb.ListJobsRequest(model=MODEL), timeout=10).jobs) == []


def test_a_sequence_request_needs_feedback_or_a_sequence_folder(
    stack: Stack, tmp_path: Path
) -> None:
    stub = _trainer(stack)
    with_teacher = feedback_request(None, model=MODEL)
    with_teacher.teacher_version = 1
    cases = [
        (
            pb.StartTrainingRequest(model=MODEL),
            f"dataset: a {MODEL} trains on the shoppers' feedback (feedback.enabled) or on "
            f"a folder holding {HISTORIES_FILE}",
        ),
        (pb.StartTrainingRequest(model=MODEL, dataset=str(tmp_path)), HISTORIES_FILE),
        # Refused before any feedback is read.
        (
            with_teacher,
            f"teacher_version: only a text_encoder or a cross_encoder distils, not a {MODEL}",
        ),
        (
            pb.StartTrainingRequest(
                model="intent_classifier",
                dataset=str(tmp_path),
                feedback=pb.FeedbackSource(enabled=True),
            ),
            "feedback: only the cross_encoder and the sequence_recommender learn from "
            "feedback, not the intent_classifier",
        ),
    ]
    for request, message in cases:
        with pytest.raises(grpc.RpcError) as refused:
            stub.StartTraining(request, timeout=30)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, message
        assert message in refused.value.details(), refused.value.details()
    assert _feedback_folders(stack) == []


def test_feedback_trains_a_version_and_the_next_run_is_measured_against_it(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    stub = _trainer(stack)
    started = stub.StartTraining(feedback_request(None, SINCE, TINY, model=MODEL), timeout=120)
    folder = Path(started.feedback_data.dataset)
    info = json.loads((folder / INFO_FILE).read_text(encoding="utf-8"))
    # Only the window's shoppers; each with its reload and discontinued product dropped.
    assert (info["shoppers"], info["products"]) == (RECENT_SHOPPERS, len(CATALOG))
    summary = started.feedback_data  # what the caller is told: the folder's counts
    assert (summary.shoppers, summary.products) == (RECENT_SHOPPERS, len(CATALOG))
    assert (summary.events, summary.dev_eligible) == (info["events"], info["dev_eligible"])
    assert summary.dev_eligible >= 20
    assert info["dropped"]["unknown_product"] == RECENT_SHOPPERS
    assert info["dropped"]["repeats"] == RECENT_SHOPPERS
    histories = (folder / HISTORIES_FILE).read_text(encoding="utf-8")
    assert "shopper-" not in histories and "visit-" not in histories

    first = _watch(stub, started.job_id)
    assert first.state == pb.JOB_STATE_SUCCEEDED, first.error
    assert first.result_version == 1 and first.parent_version == 0
    assert first.metrics["data/dev_cases"] >= 20
    assert "offline/next_item/ndcg@10" in first.metrics
    assert not any(k.startswith("offline/serving/") for k in first.metrics)

    registry = _registry(stack)
    try:
        v1 = registry.get_version(MODEL, 1)
        assert v1.status == "CANDIDATE"
        export = Path(v1.export_dir)
        for name in ("item_tower.onnx", "model.onnx", "items.json", "shopsense_model.json"):
            assert (export / name).is_file(), name
        assert json.loads((export / "items.json").read_text()) == sorted(
            p.product_id for p in CATALOG
        )
        assert set(v1.offline_metrics) == {
            "next_item/recall@10",
            "next_item/ndcg@10",
            "next_item/recall@50",
            "next_item/ndcg@50",
        }
        assert len(v1.data_fingerprint) == 64 and v1.dev_metrics["ndcg@10"] >= 0.0
        # Serve it, as PublishVersion does once Triton has loaded it (no Triton here).
        registry.promote(MODEL, 1)
    finally:
        registry.engine.dispose()

    # The next run through the command line: from the serving version, and measured
    # against it on the same held-out events (the same window gives the same folder).
    cli = ["models", "--target", stack.address("trainer"), "retrain", "--model", MODEL]
    cli += ["--since", SINCE.isoformat()]
    for name, value in TINY.items():
        cli += ["--set", f"{name}={value}"]
    assert main(cli) == 0
    printed = capsys.readouterr().out
    assert "sequence_recommender version 2 registered" in printed, printed
    assert "candidate 2" in printed and "serving" in printed, printed

    registry = _registry(stack)
    try:
        v2 = registry.get_version(MODEL, 2)
    finally:
        registry.engine.dispose()
    assert v2.parent_version == 1 and v2.data_fingerprint == v1.data_fingerprint
    for name in ("recall@10", "ndcg@10", "recall@50", "ndcg@50"):
        served = v2.offline_metrics[f"serving/next_item/{name}"]
        assert served == pytest.approx(v1.offline_metrics[f"next_item/{name}"], abs=1e-6)
        assert f"{served:.4f}" in printed
        assert f"{v2.offline_metrics[f'next_item/{name}']:.4f}" in printed
