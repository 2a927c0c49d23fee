"""Experiment definitions, targeting, team-draft interleaving, tokens of experiments, and
the experiment store on a real SQLite file."""

from __future__ import annotations

import collections
import dataclasses
import random

import pytest

from shared.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from shared.experiments.assignment import (
    INTERLEAVING,
    Arm,
    Experiment,
    Pipeline,
    assign,
    assign_arm,
    from_dict,
    read_file,
    to_dict,
    validate,
)
from shared.experiments.attribution import Attribution, AttributionSigner
from shared.experiments.interleaving import TEAM_A, TEAM_B, seed_for, team_draft
from shared.storage.database import create_db_engine
from shared.storage.experiments import ExperimentState, ExperimentStore

pytestmark = pytest.mark.unit


def _experiment(**changes) -> Experiment:
    base = Experiment(
        name="ce-v2",
        salt="",
        arms=(
            Arm("control", 0.5),
            Arm("treatment", 0.5, {"cross_encoder": "2"}, Pipeline(rerank_depth=20)),
        ),
    )
    return dataclasses.replace(base, **changes)


def _arm(index: int, **changes) -> tuple[Arm, ...]:
    arms = list(_experiment().arms)
    arms[index] = dataclasses.replace(arms[index], **changes)
    return tuple(arms)


def test_a_good_definition_passes_and_gets_its_name_as_salt() -> None:
    checked = validate(_experiment())
    assert checked.salt == "ce-v2"
    assert checked.pins() == {"cross_encoder": {2}}
    assert from_dict(to_dict(checked)) == checked


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"name": "CE v2"}, "experiment.name"),
        ({"name": ""}, "experiment.name"),
        ({"type": "bandit"}, "experiment.type"),
        ({"arms": (Arm("only", 1.0),)}, "experiment.arms: 2 to 10"),
        ({"arms": _arm(1, name="control")}, "experiment.arms[1].name"),
        ({"arms": _arm(0, name="Control!")}, "experiment.arms[0].name"),
        ({"arms": _arm(1, share=0.6)}, "experiment.arms: the shares must sum to 1"),
        ({"arms": _arm(0, share=0.0)}, "experiment.arms[0].share"),
        ({"arms": _arm(0, share=float("nan"))}, "experiment.arms[0].share"),
        ({"arms": _arm(1, models={"ranker": "2"})}, "experiment.arms[1].models: unknown model"),
        ({"arms": _arm(1, models={"cross_encoder": "v2"})}, "experiment.arms[1].models.cross"),
        ({"arms": _arm(1, models={"cross_encoder": "²"})}, "experiment.arms[1].models.cross"),
        ({"arms": _arm(1, models={"cross_encoder": "٣"})}, "experiment.arms[1].models.cross"),
        ({"arms": _arm(1, models={"cross_encoder": "9" * 5000})}, "arms[1].models.cross"),
        ({"arms": _arm(1, pipeline=Pipeline(rerank_depth=500))}, "arms[1].pipeline.rerank_depth"),
        ({"arms": _arm(0, pipeline=Pipeline(dense_weight=-1))}, "arms[0].pipeline.dense_weight"),
        ({"traffic_fraction": 0.0}, "experiment.targeting.traffic_fraction"),
        ({"traffic_fraction": 1.5}, "experiment.targeting.traffic_fraction"),
        (
            {"type": INTERLEAVING, "arms": (Arm("a", 0.4), Arm("b", 0.3), Arm("c", 0.3))},
            "interleaving compares exactly 2 arms",
        ),
    ],
)
def test_bad_definitions_are_refused_naming_the_field(changes: dict, named: str) -> None:
    with pytest.raises(InvalidArgument, match=named.replace("[", r"\[").replace("]", r"\]")):
        validate(_experiment(**changes))


def test_a_config_table_with_an_unknown_key_is_refused_naming_it() -> None:
    table = to_dict(validate(_experiment()))
    table["arms"][1]["pipeline"]["rerank_dept"] = 10
    with pytest.raises(InvalidArgument, match=r"arms\[1\].pipeline: unknown key 'rerank_dept'"):
        from_dict(table)


def test_three_arms_split_by_their_shares_and_stay_sticky() -> None:
    experiment = validate(Experiment("three", "", (Arm("a", 0.2), Arm("b", 0.3), Arm("c", 0.5))))
    first = [assign(experiment, "", f"session-{i}") for i in range(30_000)]
    restarted = validate(from_dict(to_dict(experiment)))  # as the gateway reads it back
    assert first == [assign(restarted, "", f"session-{i}") for i in range(30_000)]
    counts = collections.Counter(first)
    for name, share in (("a", 0.2), ("b", 0.3), ("c", 0.5)):
        expected = 30_000 * share
        sd = (30_000 * share * (1 - share)) ** 0.5
        assert abs(counts[name] - expected) < 4 * sd, (name, counts)


def test_targeting_lets_a_fraction_in_without_biasing_the_split() -> None:
    experiment = validate(_experiment(traffic_fraction=0.3))
    arms = [assign_arm(experiment, f"user-{i}", "") for i in range(20_000)]
    entered = [a.name for a in arms if a is not None]
    assert abs(len(entered) - 6_000) < 4 * (20_000 * 0.3 * 0.7) ** 0.5
    counts = collections.Counter(entered)
    assert abs(counts["control"] - len(entered) / 2) < 4 * (len(entered) * 0.25) ** 0.5
    assert assign(experiment, "user-outside", "") in {"control", "treatment"}


def test_signed_in_only_leaves_anonymous_shoppers_out() -> None:
    experiment = validate(_experiment(signed_in_only=True))
    assert assign_arm(experiment, "", "session-1") is None
    assert assign_arm(experiment, "user-1", "session-1") is not None


def _check_team_draft(a: list[str], b: list[str], merged: list[str], teams: str) -> None:
    assert len(merged) == len(set(merged)) == len(set(a) | set(b))
    assert set(merged) == set(a) | set(b)
    for team, ranking in ((TEAM_A, a), (TEAM_B, b)):
        picks = [item for item, t in zip(merged, teams, strict=True) if t == team]
        # Each arm's picks keep its own order.
        assert picks == sorted(picks, key=ranking.index)
    # While both arms have items left, the teams never differ by more than one pick.
    for n in range(1, len(merged) + 1):
        prefix = teams[:n]
        if set(a) - set(merged[:n]) and set(b) - set(merged[:n]):
            assert abs(prefix.count(TEAM_A) - prefix.count(TEAM_B)) <= 1


def test_team_draft_merges_fairly_and_repeats_for_the_same_seed() -> None:
    rng = random.Random(3)
    items = [f"p{i}" for i in range(40)]
    for trial in range(50):
        a = rng.sample(items, 30)
        b = rng.sample(items, 25)
        merged, teams = team_draft(a, b, seed=trial)
        _check_team_draft(a, b, merged, teams)
        assert team_draft(a, b, seed=trial) == (merged, teams)
        assert merged[0] in (a[0], b[0])


def test_team_draft_of_one_ranking_is_that_ranking_and_credits_both_arms_evenly() -> None:
    ranking = [f"p{i}" for i in range(10)]
    firsts = collections.Counter()
    for seed in range(2_000):
        merged, teams = team_draft(ranking, ranking, seed=seed)
        assert merged == ranking
        firsts[teams[0]] += 1
    assert abs(firsts[TEAM_A] - 1_000) < 4 * 22  # a fair coin decides the first pick
    assert team_draft(ranking, list(reversed(ranking)), seed_for("s", "u", "q"), limit=4)[0][
        :2
    ] in (["p0", "p9"], ["p9", "p0"])


def test_tokens_carry_the_experiment_and_the_interleaved_teams() -> None:
    signer = AttributionSigner("secret")
    token = signer.encode(
        Attribution("req-1", "interleaved", {}, 1700000000, "ce-v2", "abba", offset=20)
    )
    decoded = signer.decode(token)
    assert decoded.experiment == "ce-v2" and decoded.teams == "abba"
    assert [decoded.team_at(p) for p in (20, 21, 22, 24, 25)] == ["", "a", "b", "a", ""]
    plain = signer.decode(signer.encode(Attribution("req-2", "control", {})))
    assert plain.experiment == "" and plain.teams == "" and plain.team_at(1) == ""


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_store_keeps_one_running_experiment_and_immutable_definitions(
    backend: str, tmp_path, request: pytest.FixtureRequest
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'registry.db'}"
        if backend == "sqlite"
        else str(request.getfixturevalue("postgres_url"))
    )
    store = ExperimentStore(create_db_engine(url))
    first = validate(_experiment())
    row, created = store.create(first.name, to_dict(first))
    assert created and row.experiment_state == ExperimentState.DRAFT
    # Applying a file again:
    assert store.create(first.name, to_dict(first)) == (store.get("ce-v2"), False)
    with pytest.raises(AlreadyExists, match=r"experiment\.name: 'ce-v2' exists"):
        store.create(first.name, to_dict(dataclasses.replace(first, description="changed")))
    second = validate(_experiment(name="ce-v3"))
    store.create(second.name, to_dict(second))
    assert store.start("ce-v2").experiment_state == ExperimentState.RUNNING
    with pytest.raises(FailedPrecondition, match="'ce-v2' is running"):
        store.start("ce-v3")
    assert store.running().name == "ce-v2"
    stopped = store.stop("ce-v2", "guard rail: error rate 0.2 > 0.05")
    assert stopped.experiment_state == ExperimentState.STOPPED
    assert stopped.stop_reason.startswith("guard rail") and stopped.stopped_at is not None
    with pytest.raises(FailedPrecondition, match="only a DRAFT starts"):
        store.start("ce-v2")
    with pytest.raises(FailedPrecondition, match="not RUNNING"):
        store.stop("ce-v2")
    with pytest.raises(NotFound, match="name: no experiment called 'nope'"):
        store.get("nope")
    assert [r.name for r in store.list()] == ["ce-v3", "ce-v2"]
    assert store.start("ce-v3").experiment_state == ExperimentState.RUNNING
    # A second engine on the same database sees the same state.
    again = ExperimentStore(create_db_engine(url))
    assert from_dict(again.running().definition) == second


def test_an_experiments_file_is_read_with_its_start_flags_and_refused_by_name(tmp_path) -> None:
    path = tmp_path / "experiments.toml"
    path.write_text(
        '[[experiment]]\nname = "a"\nstart = true\n'
        '[[experiment.arms]]\nname = "x"\nshare = 0.5\n'
        '[[experiment.arms]]\nname = "y"\nshare = 0.5\nmodels = { cross_encoder = "2" }\n',
        encoding="utf-8",
    )
    [(experiment, start)] = read_file(path)
    assert start and validate(experiment).arms[1].pinned("cross_encoder") == "2"
    path.write_text("[[experiment]]\nname = \n", encoding="utf-8")
    with pytest.raises(InvalidArgument, match=r"experiments\.toml: "):
        read_file(path)
    path.write_text("[something]\n", encoding="utf-8")
    with pytest.raises(InvalidArgument, match=r"no \[\[experiment\]\] table"):
        read_file(path)
    path.write_text('[[experiment]]\nname = "a"\ncolour = "red"\n', encoding="utf-8")
    with pytest.raises(InvalidArgument, match=r"experiment\[0\]: unknown key 'colour'"):
        read_file(path)
