"""Experiments end to end: defined through the trainer's ExperimentService (and a config
file), checked against the registry, started onto a real Triton, and applied by the
gateway to real searches: arms pin versions and settings, assignment is sticky, tokens
name the experiment, interleaving merges two arms and credits each result to one.

Real parts: a Triton of this module's own, real gRPC servers on port 0, a real registry
file and catalog file, exported (untrained-head) models.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from shopsense.common.v1 import common_pb2
from shopsense.experiments.v1 import experiment_service_pb2 as epb
from shopsense.experiments.v1 import experiment_service_pb2_grpc as epb_grpc
from shopsense.search.v1 import search_service_pb2 as spb
from shopsense.search.v1 import search_service_pb2_grpc

from services.gateway.routing import INTERLEAVED
from services.gateway.server import TIMINGS_KEY
from shared.cli.main import console, main
from shared.errors import NotFound
from shared.experiments.attribution import AttributionSigner
from shared.models.triton_server import TritonServer
from shared.rpc.server import ServerHandle
from shared.runtime.experiments import stop_running
from shared.storage.database import create_db_engine
from shared.storage.feedback import FeedbackStore, ValidEvent
from shared.storage.registry import ModelRegistry
from shared.training.publish import install_version, loaded_versions
from tests.integration.conftest import settings_of
from tests.support import SMALL_STORE, wait_until

pytestmark = pytest.mark.integration
ANY = "127.0.0.1:0"
SECRET = "test-secret"
STORE = SMALL_STORE
QUERY = STORE.queries[0].text


@dataclasses.dataclass
class Experiments:
    triton: TritonServer
    stack: Experiments

    def address(self, service: str) -> str:
        return self.stack.address(service)

    def experiments(self) -> epb_grpc.ExperimentServiceStub:
        return self.stack.stub("trainer", epb_grpc.ExperimentServiceStub)

    def search(self, session: str, query: str = QUERY, **fields) -> spb.SearchResponse:
        stub = self.stack.stub("gateway", search_service_pb2_grpc.SearchServiceStub)
        request = spb.SearchRequest(
            query=query, user=common_pb2.UserContext(session_id=session), **fields
        )
        return stub.Search(request, timeout=30)


@pytest.fixture(scope="module")
def stack(
    exported_model_repository: Path,
    untrained_exports: dict[str, Path],
    tmp_path_factory: pytest.TempPathFactory,
    start_stack,
) -> Iterator[Experiments]:
    tmp = tmp_path_factory.mktemp("experiments")
    repository = tmp / "repository"
    shutil.copytree(exported_model_repository / "text_encoder", repository / "text_encoder")
    intent_export = untrained_exports["intent_classifier"]
    cross_export = untrained_exports["cross_encoder"]
    install_version(repository, "intent_classifier", 1, intent_export)
    install_version(repository, "cross_encoder", 1, cross_export)
    # The registry: intent 1 and cross-encoder 1 serve; cross-encoder 2 (the same weights,
    # another number) is a candidate that is not on Triton until an experiment needs it.
    registry_url = f"sqlite:///{tmp / 'registry.db'}"
    registry = ModelRegistry(create_db_engine(registry_url))
    registry.register_version("intent_classifier", 1, export_dir=str(intent_export))
    registry.promote("intent_classifier", 1)
    for version in (1, 2):
        registry.register_version("cross_encoder", version, export_dir=str(cross_export))
    registry.promote("cross_encoder", 1)
    registry.engine.dispose()

    triton = TritonServer(repository, log_file=tmp / "triton.log").start()
    try:
        stack = start_stack(
            ["retrieval", "ranking", "feedback", "intent", "trainer", "gateway"],
            triton_url=triton.grpc_url,
            state=tmp,
            settings={
                "triton_models": repository,
                "refresh_s": 0.3,
                "token_secret": SECRET,
                "grpc_workers": 8,
                # The trainer's business guard rail looks every half second, from 40
                # shoppers an arm: only the guard-rail test's simulation reaches that many.
                "guard_interval_s": 0.5,
                "guard_min_shoppers": 40,
            },
            using={"ranking": {"watch_interval_s": 0.2}},
        )
        stack.load_catalog(STORE.products)
        yield Experiments(triton, stack)
        stack.stop()
    finally:
        triton.stop()


def _ab(name: str, **treatment_pins: str) -> epb.Experiment:
    return epb.Experiment(
        name=name,
        description="cross-encoder 2 against 1",
        arms=[
            epb.Arm(name="control", share=0.5),
            epb.Arm(
                name="treatment",
                share=0.5,
                models=epb.ModelPins(**treatment_pins),
                pipeline=epb.PipelineSettings(rerank_depth=20),
            ),
        ],
    )


@pytest.mark.parametrize(
    ("arm_changes", "code", "named"),
    [
        ({"models": {"cross_encoder": "9"}}, grpc.StatusCode.NOT_FOUND, "arms[1].models.cross"),
        ({"models": {"intent_classifier": "4"}}, grpc.StatusCode.NOT_FOUND, "arms[1].models.int"),
        ({"models": {"text_encoder": "3"}}, grpc.StatusCode.NOT_FOUND, "arms[1].models.text"),
        ({"models": {"cross_encoder": "²"}}, grpc.StatusCode.INVALID_ARGUMENT, "arms[1].models.cr"),
        ({"share": 0.7}, grpc.StatusCode.INVALID_ARGUMENT, "the shares must sum to 1"),
        ({"name": "control"}, grpc.StatusCode.INVALID_ARGUMENT, "arms[1].name"),
    ],
)
def test_bad_experiments_are_refused_at_configuration_time(
    stack: Experiments, arm_changes: dict, code: grpc.StatusCode, named: str
) -> None:
    definition = _ab("refused")
    arm = definition.arms[1]
    for key, value in arm_changes.items():
        if key == "models":
            arm.models.CopyFrom(epb.ModelPins(**value))
        else:
            setattr(arm, key, value)
    with pytest.raises(grpc.RpcError) as raised:
        stack.experiments().CreateExperiment(
            epb.CreateExperimentRequest(experiment=definition), timeout=10
        )
    assert raised.value.code() == code
    assert named in raised.value.details()
    with pytest.raises(grpc.RpcError) as missing:
        stack.experiments().GetExperiment(epb.GetExperimentRequest(name="refused"), timeout=10)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


def _arm_of(stack: Experiments, session: str) -> tuple[spb.SearchResponse, object]:
    reply = stack.search(session)
    return reply, AttributionSigner(SECRET).decode(reply.attribution_token)


def test_an_ab_experiment_routes_arms_to_their_versions_until_stopped(stack: Experiments) -> None:
    stub = stack.experiments()
    created = stub.CreateExperiment(
        epb.CreateExperimentRequest(experiment=_ab("ce-2-vs-1", cross_encoder="2")), timeout=10
    ).experiment
    assert created.state == epb.EXPERIMENT_STATE_DRAFT and created.salt == "ce-2-vs-1"
    assert loaded_versions(stack.triton.grpc_url, "cross_encoder") == [1]

    started = stub.StartExperiment(epb.StartExperimentRequest(name="ce-2-vs-1"), timeout=120)
    assert started.experiment.state == epb.EXPERIMENT_STATE_RUNNING
    assert loaded_versions(stack.triton.grpc_url, "cross_encoder") == [1, 2]
    stub.CreateExperiment(epb.CreateExperimentRequest(experiment=_ab("other")), timeout=10)
    with pytest.raises(grpc.RpcError) as second:
        stub.StartExperiment(epb.StartExperimentRequest(name="other"), timeout=10)
    assert second.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "'ce-2-vs-1' is running" in second.value.details()

    # The gateway picks the experiment up on its next refresh.
    wait_until(lambda: _arm_of(stack, "probe")[1].experiment == "ce-2-vs-1", "gateway sees it", 30)
    arms: dict[str, list[str]] = {"control": [], "treatment": []}
    for i in range(40):
        session = f"shopper-{i}"
        reply, token = _arm_of(stack, session)
        assert token.experiment == "ce-2-vs-1" and token.arm == reply.experiment_arm
        arms[reply.experiment_arm].append(session)
        if reply.degraded.ranking:  # ranking may not have seen version 2 load yet
            continue
        wanted = "cross_encoder/2" if reply.experiment_arm == "treatment" else "cross_encoder/1"
        assert reply.model_versions.ranking.startswith(wanted), reply.model_versions
        assert token.model_versions["ranking"] == reply.model_versions.ranking
    assert 8 <= len(arms["treatment"]) <= 32, arms  # Binomial(40, 0.5): 4 sd either side
    # Sticky: the same shoppers land in the same arms on every request.
    for arm, sessions in arms.items():
        assert {_arm_of(stack, s)[0].experiment_arm for s in sessions[:5]} == {arm}
    treated = stack.search(arms["treatment"][0])
    assert treated.model_versions.ranking.startswith("cross_encoder/2")
    # rerank_depth 20: the cross-encoder's part is in the 20 best only.
    parts = [{p.feature for p in r.explanation.score_parts} for r in treated.results]
    assert all("cross_encoder" in p for p in parts[:5])

    stopped = stub.StopExperiment(
        epb.StopExperimentRequest(name="ce-2-vs-1", reason="enough data"), timeout=10
    ).experiment
    assert stopped.state == epb.EXPERIMENT_STATE_STOPPED and stopped.stop_reason == "enough data"
    wait_until(lambda: _arm_of(stack, "probe")[1].experiment == "", "gateway drops it", 30)
    reply, token = _arm_of(stack, arms["treatment"][0])
    assert reply.experiment_arm == "control" and token.experiment == ""
    assert reply.model_versions.ranking.startswith("cross_encoder/1")
    listed = stub.ListExperiments(
        epb.ListExperimentsRequest(state=epb.EXPERIMENT_STATE_STOPPED), timeout=10
    )
    assert [e.name for e in listed.experiments] == ["ce-2-vs-1"]


def test_interleaving_merges_two_arms_and_names_who_picked_each_result(stack: Experiments) -> None:
    stub = stack.experiments()
    stop_running(stub, "an earlier test's")
    wait_until(lambda: _arm_of(stack, "probe")[1].experiment == "", "no experiment", 30)
    baseline = [r.product_id for r in stack.search("shopper-x", page_size=30).results]

    definition = epb.Experiment(
        name="reversed-vs-serving",
        type=epb.EXPERIMENT_TYPE_INTERLEAVING,
        arms=[
            epb.Arm(name="serving", share=0.5),
            epb.Arm(
                name="reversed", share=0.5, pipeline=epb.PipelineSettings(reverse_ranking=True)
            ),
        ],
    )
    stub.CreateExperiment(epb.CreateExperimentRequest(experiment=definition), timeout=10)
    stub.StartExperiment(epb.StartExperimentRequest(name="reversed-vs-serving"), timeout=60)
    wait_until(
        lambda: _arm_of(stack, "probe")[1].experiment == "reversed-vs-serving",
        "gateway sees the interleaving",
        30,
    )
    reply, call = search_service_pb2_grpc.SearchServiceStub(
        stack.stack.channel("gateway")
    ).Search.with_call(
        spb.SearchRequest(
            query=QUERY, user=common_pb2.UserContext(session_id="shopper-x"), page_size=30
        ),
        timeout=30,
    )
    timings = dict(call.trailing_metadata())[TIMINGS_KEY]
    # The arms differ only in ranking: one retrieval, two rankings.
    assert "ranking_b=" in timings and "retrieval_b=" not in timings, timings
    token = AttributionSigner(SECRET).decode(reply.attribution_token)
    assert reply.experiment_arm == token.arm == INTERLEAVED
    assert len(token.teams) == len(reply.results) == 30
    ids = [r.product_id for r in reply.results]
    assert len(set(ids)) == len(ids)
    picked_a = [pid for pid, team in zip(ids, token.teams, strict=True) if team == "a"]
    picked_b = [pid for pid, team in zip(ids, token.teams, strict=True) if team == "b"]
    assert picked_a and picked_b and abs(len(picked_a) - len(picked_b)) <= 1
    # The serving arm's picks keep its order; the reversed arm's start from the bottom.
    assert picked_a == [pid for pid in baseline if pid in set(picked_a)]
    assert ids[0] in (baseline[0],) or token.teams[0] == "b"
    # The next page continues the same merge, and its token credits its own positions.
    second = stack.search("shopper-x", page_size=30, page_token=reply.next_page_token)
    second_token = AttributionSigner(SECRET).decode(second.attribution_token)
    assert second_token.offset == 30 and second_token.team_at(31) in ("a", "b")
    assert not set(ids) & {r.product_id for r in second.results}
    stub.StopExperiment(epb.StopExperimentRequest(name="reversed-vs-serving"), timeout=10)


def test_a_config_file_defines_and_starts_experiments_when_the_trainer_starts(
    stack: Experiments,
    start_stack,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch,
) -> None:
    stub = stack.experiments()
    stop_running(stub, "an earlier test's")
    good = tmp_path / "experiments.toml"
    good.write_text(
        """
[[experiment]]
name = "from-file"
start = true
description = "rerank depth 10 against the default"

[[experiment.arms]]
name = "control"
share = 0.5

[[experiment.arms]]
name = "shallow"
share = 0.5
models = { cross_encoder = "2" }
pipeline = { rerank_depth = 10 }
""",
        encoding="utf-8",
    )
    second = settings_of(stack.stack, "trainer", experiments_file=str(good))
    with start_stack(["trainer"], only={"trainer": second}) as other:
        got = other.stub("trainer", epb_grpc.ExperimentServiceStub).GetExperiment(
            epb.GetExperimentRequest(name="from-file"), timeout=10
        )
        assert got.experiment.state == epb.EXPERIMENT_STATE_RUNNING
        assert got.experiment.arms[1].models.cross_encoder == "2"
    stub.StopExperiment(epb.StopExperimentRequest(name="from-file"), timeout=10)
    # The command line reads the same file format and lists what the trainer holds.
    cli = ["experiments", "--target", stack.address("trainer")]
    monkeypatch.setattr(console, "width", 200)  # no wrapping in the captured table
    assert main([*cli, "create", str(good)]) == 0  # the same definition again: no change
    assert main([*cli, "list", "--state", "stopped"]) == 0
    listed = capsys.readouterr().out
    assert "from-file" in listed and "shallow" in listed and "rerank_depth 10" in listed

    bad = tmp_path / "bad.toml"
    bad.write_text(
        good.read_text(encoding="utf-8")
        .replace('"from-file"', '"bad-pin"')
        .replace('cross_encoder = "2"', 'cross_encoder = "7"'),
        encoding="utf-8",
    )
    with pytest.raises(NotFound, match=r"bad.toml: experiment\[0\].arms\[1\].models.cross_encoder"):
        start_stack(
            ["trainer"],
            only={"trainer": settings_of(stack.stack, "trainer", experiments_file=str(bad))},
        )


def test_the_report_reads_the_experiments_feedback_through_rpc_and_cli(
    stack: Experiments, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    stub = stack.experiments()
    stub.CreateExperiment(epb.CreateExperimentRequest(experiment=_ab("report-me")), timeout=10)
    # What the feedback service stores for the experiment's tokens: treatment shoppers
    # click twice as often.
    now = datetime.now(UTC)
    events, n = [], 0
    for arm, clicks in (("control", 1), ("treatment", 2)):
        for s in range(150):
            for kind, count in (("impression", 10), ("click", clicks)):
                for _ in range(count):
                    n += 1
                    events.append(
                        ValidEvent(
                            f"ev-{n}",
                            kind,
                            now,
                            now,
                            f"p{n % 40}",
                            user_id=f"{arm}-{s}",
                            request_id=f"{arm}-{s}-r",
                            arm=arm,
                            experiment="report-me",
                        )
                    )
    feedback = FeedbackStore(create_db_engine(stack.stack.settings["feedback"].feedback_db_url))
    feedback.record(events)
    feedback.engine.dispose()

    reply = stub.GetExperimentReport(epb.GetExperimentReportRequest(name="report-me"), timeout=30)
    control, treatment = reply.arms
    assert (control.shoppers, control.impressions, control.clicks) == (150, 1500, 150)
    ctr = treatment.metrics[0]
    assert ctr.name == "ctr" and ctr.estimate.value == pytest.approx(0.2)
    assert ctr.difference.value == pytest.approx(0.1) and ctr.p_value < 1e-6
    assert not control.metrics[0].HasField("difference")
    assert reply.srm_p_value == pytest.approx(1.0) and not reply.sample_ratio_mismatch
    assert reply.verdict.startswith("treatment: ctr higher")
    few = stub.GetExperimentReport(
        epb.GetExperimentReportRequest(name="report-me", min_shoppers=1000), timeout=30
    )
    assert few.verdict.startswith("no verdict: arm control has 150 shoppers")
    for name, code in (("nope", grpc.StatusCode.NOT_FOUND),):
        with pytest.raises(grpc.RpcError) as missing:
            stub.GetExperimentReport(epb.GetExperimentReportRequest(name=name), timeout=10)
        assert missing.value.code() == code

    monkeypatch.setattr(console, "width", 220)
    chart = tmp_path / "report.png"
    cli = ["experiments", "--target", stack.address("trainer")]
    assert main([*cli, "report", "report-me", "--png", str(chart)]) == 0
    printed = capsys.readouterr().out
    assert "verdict: treatment: ctr higher" in printed and "0.2 [" in printed
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_promoting_an_arm_serves_its_versions_and_a_rollback_undoes_it(
    stack: Experiments, capsys: pytest.CaptureFixture[str]
) -> None:
    from shopsense.trainer.v1 import trainer_service_pb2 as tpb
    from shopsense.trainer.v1 import trainer_service_pb2_grpc as tpb_grpc

    stub = stack.experiments()
    stop_running(stub, "an earlier test's")
    stub.CreateExperiment(
        epb.CreateExperimentRequest(experiment=_ab("promote-me", cross_encoder="2")), timeout=10
    )
    with pytest.raises(grpc.RpcError) as draft:
        stub.PromoteArm(epb.PromoteArmRequest(name="promote-me", arm="treatment"), timeout=10)
    assert draft.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    stub.StartExperiment(epb.StartExperimentRequest(name="promote-me"), timeout=120)
    with pytest.raises(grpc.RpcError) as no_arm:
        stub.PromoteArm(epb.PromoteArmRequest(name="promote-me", arm="winner"), timeout=10)
    assert no_arm.value.code() == grpc.StatusCode.NOT_FOUND
    assert "arm: no arm 'winner'" in no_arm.value.details()

    cli = ["experiments", "--target", stack.address("trainer")]
    assert main([*cli, "promote", "promote-me", "treatment"]) == 0
    printed = capsys.readouterr().out
    assert "serving now: cross_encoder 2" in printed and "SHOPSENSE_RERANK_DEPTH=20" in printed
    got = stub.GetExperiment(epb.GetExperimentRequest(name="promote-me"), timeout=10).experiment
    assert got.state == epb.EXPERIMENT_STATE_STOPPED and got.stop_reason == "promoted arm treatment"
    trainer = tpb_grpc.TrainerServiceStub(grpc.insecure_channel(stack.address("trainer")))
    listed = trainer.ListModelVersions(tpb.ListModelVersionsRequest(model="cross_encoder"))
    assert listed.serving_version == 2
    wait_until(
        lambda: stack.search("anyone").model_versions.ranking.startswith("cross_encoder/2"),
        "the gateway serves the promoted version",
        30,
    )
    # A promotion is a publish: the registry's rollback undoes it.
    trainer.RollbackVersion(tpb.RollbackVersionRequest(model="cross_encoder"), timeout=120)
    assert (
        trainer.ListModelVersions(
            tpb.ListModelVersionsRequest(model="cross_encoder")
        ).serving_version
        == 1
    )


def _start_reversed(stack: Experiments, name: str) -> epb_grpc.ExperimentServiceStub:
    """Start an A/B experiment of the serving ranking against its reverse, once the
    gateway applies it."""
    stub = stack.experiments()
    stop_running(stub, "an earlier test's")
    definition = epb.Experiment(
        name=name,
        arms=[
            epb.Arm(name="control", share=0.5),
            epb.Arm(
                name="reversed", share=0.5, pipeline=epb.PipelineSettings(reverse_ranking=True)
            ),
        ],
    )
    stub.CreateExperiment(epb.CreateExperimentRequest(experiment=definition), timeout=10)
    stub.StartExperiment(epb.StartExperimentRequest(name=name), timeout=60)
    wait_until(lambda: _arm_of(stack, "probe")[1].experiment == name, "gateway sees it", 30)
    return stub


def test_simulated_shoppers_drive_the_suite_and_the_report_finds_the_reversed_arm(
    stack: Experiments,
) -> None:
    from shared.simulation.shoppers import ShopperSimulator

    stub = _start_reversed(stack, "sim-reversed")
    feedback = stack.address("feedback")
    simulator = ShopperSimulator(STORE.to_dataset(), stack.address("gateway"), feedback, seed=3)
    summary = simulator.run(shoppers=60, searches_each=2)
    assert summary.events_rejected == 0, summary.rejections
    assert summary.events_accepted == summary.events_sent > 0
    control, reversed_ = summary.arms["control"], summary.arms["reversed"]
    assert control.searches + reversed_.searches == 120
    # Position bias and hidden relevance: the reversed arm shows its worst first.
    assert control.clicks / control.impressions > 2 * reversed_.clicks / reversed_.impressions
    # Seeded: the same shoppers again make the same events, which are all duplicates.
    again = ShopperSimulator(STORE.to_dataset(), stack.address("gateway"), feedback, seed=3).run(
        shoppers=60, searches_each=2
    )
    assert again.events_duplicate == summary.events_sent and again.events_accepted == 0
    reply = stub.GetExperimentReport(
        epb.GetExperimentReportRequest(name="sim-reversed", min_shoppers=20), timeout=30
    )
    by_arm = {a.arm: a for a in reply.arms}
    assert by_arm["control"].clicks == control.clicks  # the suite counted what was sent
    assert by_arm["reversed"].impressions == reversed_.impressions
    assert "reversed: ctr lower" in reply.verdict
    stub.StopExperiment(epb.StopExperimentRequest(name="sim-reversed"), timeout=10)


@pytest.fixture(scope="module")
def feedback(stack: Experiments) -> str:
    """The feedback service on the module's feedback store; its address."""
    return stack.address("feedback")


@pytest.fixture
def another_gateway(stack: Experiments, start_stack) -> Iterator:
    """``another_gateway(**settings)``: another gateway in front of the same services, with
    its own settings; stopped after the test."""
    started = []

    def start(**changes: object) -> ServerHandle:
        gateway = start_stack(
            ["gateway"], only={"gateway": settings_of(stack.stack, "gateway", **changes)}
        )
        started.append(gateway)
        return gateway.handles["gateway"]

    yield start
    for gateway in started:
        gateway.stop()


def _state(stub: epb_grpc.ExperimentServiceStub, name: str) -> epb.Experiment:
    return stub.GetExperiment(epb.GetExperimentRequest(name=name), timeout=10).experiment


def test_the_guard_rail_stops_a_reversed_arm_and_the_clicks_retrain_the_cross_encoder(
    stack: Experiments, feedback: str, another_gateway, tmp_path: Path
) -> None:
    from shopsense.trainer.v1 import trainer_service_pb2 as tpb
    from shopsense.trainer.v1 import trainer_service_pb2_grpc as tpb_grpc

    from shared.cli.retrain import feedback_request
    from shared.data.synthetic import write_wands
    from shared.simulation.shoppers import ShopperSimulator

    stub = _start_reversed(stack, "guarded")
    # Every search explores (its top results shuffled), so that the trainer can measure
    # position bias from the clicks below; the reversed arm's top ten are still its worst.
    gateway = another_gateway(explore_rate=1.0)
    try:
        simulator = ShopperSimulator(STORE.to_dataset(), gateway.address, feedback, seed=4)
        summary = simulator.run(shoppers=120, searches_each=2, concurrency=4)
    finally:
        gateway.stop(0.5)
    assert summary.events_rejected == 0, summary.rejections
    wait_until(
        lambda: _state(stub, "guarded").state == epb.EXPERIMENT_STATE_STOPPED,
        "the guard rail stops the experiment",
        30,
    )
    reason = _state(stub, "guarded").stop_reason
    assert reason.startswith("guard rail: arm reversed ctr"), reason
    assert "below control's" in reason

    # The clicks (of both arms, explored pages and all) train the next cross-encoder.
    catalog = tmp_path / "catalog"
    write_wands(STORE, catalog)
    trainer = tpb_grpc.TrainerServiceStub(grpc.insecure_channel(stack.address("trainer")))
    tiny = {"max_steps": "3", "batch_size": "8", "group_size": "4", "eval_queries": "4"}
    started = trainer.StartTraining(feedback_request(catalog, overrides=tiny), timeout=120)
    data = started.feedback_data
    assert data.pages >= 200 and data.clicks > 0 and data.queries >= 5
    assert data.examination_measured and data.explored_clicks >= 50
    assert 0.4 < data.eta < 1.6, data.eta  # the simulated shoppers' is 0.9
    assert data.examination[0] == 1.0 and data.examination[1] < 1.0
    labels = (Path(data.dataset) / "label.csv").read_text(encoding="utf-8").splitlines()
    assert labels[0].split("\t") == ["id", "query_id", "product_id", "label", "gain"]
    assert len(labels) - 1 == data.judgments
    job = started.job
    for update in trainer.WatchJob(tpb.WatchJobRequest(job_id=started.job_id), timeout=300):
        job = update.job
    assert job.state == tpb.JOB_STATE_SUCCEEDED, job.error
    versions = trainer.ListModelVersions(tpb.ListModelVersionsRequest(model="cross_encoder"))
    new = next(v for v in versions.versions if v.version == job.result_version)
    assert new.status == tpb.VERSION_STATUS_CANDIDATE and versions.serving_version == 1
    assert new.offline_metrics  # evaluated against the serving version


def test_a_slow_arm_trips_the_latency_guard_rail_in_the_gateway(
    stack: Experiments, another_gateway
) -> None:
    stub = stack.experiments()
    stop_running(stub, "an earlier test's")
    # The control ranks by features alone; the treatment reranks with the cross-encoder,
    # several times slower.
    definition = epb.Experiment(
        name="slow-arm",
        arms=[
            epb.Arm(name="control", share=0.5, pipeline=epb.PipelineSettings(rerank_depth=-1)),
            epb.Arm(name="treatment", share=0.5, pipeline=epb.PipelineSettings(rerank_depth=100)),
        ],
    )
    stub.CreateExperiment(epb.CreateExperimentRequest(experiment=definition), timeout=10)
    stub.StartExperiment(epb.StartExperimentRequest(name="slow-arm"), timeout=60)
    # A gateway whose latency limit no search meets: the arm 1.5 times slower than the
    # control trips it, from 10 searches an arm.
    gateway = another_gateway(guard_max_p99_ms=1.0, guard_min_searches=10)
    search = search_service_pb2_grpc.SearchServiceStub(grpc.insecure_channel(gateway.address))
    try:
        wait_until(
            lambda: (
                AttributionSigner(SECRET)
                .decode(
                    search.Search(
                        spb.SearchRequest(query=QUERY, user=common_pb2.UserContext(session_id="p"))
                    ).attribution_token
                )
                .experiment
                == "slow-arm"
            ),
            "the new gateway sees the experiment",
            30,
        )
        for number in range(120):
            search.Search(
                spb.SearchRequest(
                    query=QUERY, user=common_pb2.UserContext(session_id=f"slow-{number}")
                ),
                timeout=30,
            )
            if _state(stub, "slow-arm").state == epb.EXPERIMENT_STATE_STOPPED:
                break
        wait_until(
            lambda: _state(stub, "slow-arm").state == epb.EXPERIMENT_STATE_STOPPED,
            "the gateway's guard rail stops the experiment",
            10,
        )
    finally:
        gateway.stop(0.5)
    reason = _state(stub, "slow-arm").stop_reason
    assert reason.startswith("guard rail: arm treatment p99 latency"), reason
    assert "(limit 1 ms; control " in reason
