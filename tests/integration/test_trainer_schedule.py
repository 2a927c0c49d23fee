"""Continuous retraining with real parts: the trainer on port 0 with its schedule on, its
registry file, a feedback database file written by the feedback store, a real cross_encoder
job (training, export, offline evaluation in a worker process) and a Triton of this module's
own that the experiment loads the candidate onto.

Below the threshold nothing starts; once enough search feedback has arrived the schedule
starts the job StartTraining starts, the candidate is evaluated offline and registered (not
served), and an A/B experiment runs with it in one arm and the serving version in the other.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from shopsense.experiments.v1 import experiment_service_pb2 as epb
from shopsense.experiments.v1 import experiment_service_pb2_grpc as epb_grpc
from shopsense.trainer.v1 import trainer_service_pb2 as pb
from shopsense.trainer.v1 import trainer_service_pb2_grpc as pb_grpc

from shared.cli.main import main
from shared.data.synthetic import generate_store, write_wands
from shared.models.triton_server import TritonServer
from shared.storage.database import create_db_engine
from shared.storage.feedback import FeedbackStore, ValidEvent
from shared.training.publish import loaded_versions
from tests.integration.conftest import Stack
from tests.support import wait_until

pytestmark = pytest.mark.integration

MODEL = "cross_encoder"
STORE = generate_store(40, 12, seed=3)
# A few steps on a few examples: the point is the schedule, not the model's quality.
TINY = "max_steps=3,batch_size=4,group_size=4,max_train_examples=16,eval_queries=4"
THRESHOLD = 600
# Search feedback: each query shown on PAGES pages of 10 results, one click a page.
QUERIES, PAGES = 8, 8  # 8 * 8 * 11 = 704 events
JOB_TIMEOUT_S = 240.0


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory, exported_model_repository: Path) -> Path:
    """A repository of this module's own (text_encoder 1): the candidate the experiment
    loads must not change what the other tests' shared Triton serves."""
    repository = tmp_path_factory.mktemp("schedule-repository")
    shutil.copytree(exported_model_repository / "text_encoder", repository / "text_encoder")
    return repository


@pytest.fixture(scope="module")
def triton_server(repository: Path) -> Iterator[TritonServer]:
    """A Triton over ``repository`` (shadows the session-wide one for this module)."""
    with TritonServer(repository, log_file=repository.parent / "triton.log") as server:
        yield server


@pytest.fixture(scope="module")
def stack(
    start_stack, triton_server, repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    catalog = tmp_path_factory.mktemp("catalog")
    write_wands(STORE, catalog)
    with start_stack(
        ["trainer"],
        triton_url=triton_server.grpc_url,
        settings={
            "triton_models": repository,
            "grpc_workers": 8,
            "retrain_models": MODEL,
            "retrain_catalog": str(catalog),
            "retrain_min_new_events": THRESHOLD,
            "retrain_interval_s": 0.3,
            "retrain_hyperparameters": TINY,
            "retrain_experiment_share": 0.5,
        },
    ) as stack:
        yield stack


def _search_feedback(first: int, last: int) -> list[ValidEvent]:
    """Events ``first`` to ``last`` of the shoppers' searches: per page, 10 impressions with
    their positions and a click on one of the top three, all naming the query."""
    now = datetime.now(UTC)
    ids = [p.product_id for p in STORE.products]
    events: list[ValidEvent] = []
    for q in range(QUERIES):
        query = STORE.queries[q].text
        for page in range(PAGES):
            request = f"req-{q}-{page}"
            shown = [ids[(q * 5 + page + k) % len(ids)] for k in range(10)]
            for k, product in enumerate(shown):
                events.append(
                    ValidEvent(
                        f"imp-{q}-{page}-{k}", "impression", now, now, product,
                        session_id=f"s-{q}-{page}", request_id=request, query=query,
                        position=k + 1,
                    )
                )  # fmt: skip
            events.append(
                ValidEvent(
                    f"click-{q}-{page}", "click", now, now, shown[page % 3],
                    session_id=f"s-{q}-{page}", request_id=request, query=query,
                )
            )  # fmt: skip
    return events[first:last]


def _record(stack: Stack, events: list[ValidEvent]) -> None:
    store = FeedbackStore(create_db_engine(stack.settings["trainer"].feedback_db_url))
    try:
        assert all(store.record(events))
    finally:
        store.engine.dispose()


def _jobs(stub: pb_grpc.TrainerServiceStub) -> pb.ListJobsResponse:
    return stub.ListJobs(pb.ListJobsRequest(model=MODEL), timeout=10)


def test_enough_new_feedback_retrains_registers_and_starts_an_experiment(
    stack: Stack, triton_server, capsys: pytest.CaptureFixture[str]
) -> None:
    trainer = stack.stub("trainer", pb_grpc.TrainerServiceStub)
    experiments = stack.stub("trainer", epb_grpc.ExperimentServiceStub)
    every = _search_feedback(0, QUERIES * PAGES * 11)
    assert len(every) > THRESHOLD

    # Below the threshold: checked, counted, nothing started.
    _record(stack, every[:400])
    wait_until(lambda: _jobs(trainer).schedule[0].new_events == 400, "the schedule counts 400", 30)
    (check,) = _jobs(trainer).schedule
    assert check.decision == f"below the threshold (400 of {THRESHOLD})", check.decision
    assert check.min_new_events == THRESHOLD and not check.HasField("since_time")
    assert list(_jobs(trainer).jobs) == []

    # Above it: the schedule starts the feedback job, from the store's search feedback.
    _record(stack, every[400:])
    wait_until(lambda: len(_jobs(trainer).jobs) == 1, "the scheduled job", 60)
    (job,) = _jobs(trainer).jobs
    expected = f"schedule: {len(every)} new feedback events since the first event"
    assert job.trigger.startswith(expected), job.trigger
    assert dict(job.hyperparameters)["max_steps"] == "3" and not job.publish

    for update in trainer.WatchJob(pb.WatchJobRequest(job_id=job.job_id), timeout=JOB_TIMEOUT_S):
        job = update.job
    assert job.state == pb.JOB_STATE_SUCCEEDED, job.error
    assert job.result_version == 1
    assert "offline/pipeline/ndcg@10" in job.metrics  # evaluated offline

    # Registered as a candidate, not served; the experiment runs with it, under the guard
    # rails, with the serving version (none: features only) in the other arm.
    name = f"retrain-{MODEL}-v1"
    wait_until(
        lambda: any(
            e.name == name and e.state == epb.EXPERIMENT_STATE_RUNNING
            for e in experiments.ListExperiments(
                epb.ListExperimentsRequest(), timeout=10
            ).experiments
        ),
        "the candidate's experiment running",
        30,
    )
    versions = trainer.ListModelVersions(pb.ListModelVersionsRequest(model=MODEL), timeout=10)
    assert [(v.version, v.status) for v in versions.versions] == [(1, pb.VERSION_STATUS_CANDIDATE)]
    assert versions.serving_version == 0
    running = experiments.GetExperiment(epb.GetExperimentRequest(name=name), timeout=10)
    arms = {arm.name: arm for arm in running.experiment.arms}
    assert arms["candidate"].models.cross_encoder == "1" and arms["candidate"].share == 0.5
    assert arms["serving"].models.cross_encoder == "" and arms["serving"].share == 0.5
    assert 1 in loaded_versions(triton_server.grpc_url, MODEL)

    # What the schedule did is on the job, and its next check counts from the job.
    wait_until(
        lambda: "experiment" in _jobs(trainer).jobs[0].trigger, "the job's outcome recorded", 30
    )
    listed = _jobs(trainer)
    assert f"candidate {MODEL} 1 registered, offline pipeline/ndcg@10" in listed.jobs[0].trigger
    assert f"experiment {name} started (50% of shoppers to the candidate)" in (
        listed.jobs[0].trigger
    )
    wait_until(lambda: _jobs(trainer).schedule[0].new_events == 0, "counted from the job", 30)
    (check,) = _jobs(trainer).schedule
    assert check.since_time.ToDatetime(UTC) == job.created_time.ToDatetime(UTC)
    assert len(_jobs(trainer).jobs) == 1

    # The command line shows the same: the schedule's check and the job it started.
    cli = ["models", "--target", stack.address("trainer"), "retrain", "--schedule"]
    assert main(cli) == 0
    printed = capsys.readouterr().out
    assert "retraining schedule" in printed and f"0 of {THRESHOLD}" in printed, printed
    assert job.job_id[:8] in printed and "schedule:" in printed, printed
