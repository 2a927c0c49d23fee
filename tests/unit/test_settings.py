"""Settings: each service reads its own record from the environment, with embedded
defaults, paths derived from the state folder, and errors that name the variable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.cli.main import main
from shared.settings import (
    ALL,
    DEV_TOKEN_SECRET,
    FeedbackSettings,
    GatewaySettings,
    RankingSettings,
    RetrievalSettings,
    TrainerSettings,
)

pytestmark = pytest.mark.unit


def test_defaults_are_embedded_and_the_environment_overrides_them() -> None:
    assert GatewaySettings.load({}).candidates == 100
    settings = GatewaySettings.load(
        {"SHOPSENSE_CANDIDATES": "40", "SHOPSENSE_SEARCH_DEADLINE_S": "0.5"}
    )
    assert (settings.candidates, settings.search_deadline_s) == (40, 0.5)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("SHOPSENSE_CANDIDATES", "many", "SHOPSENSE_CANDIDATES: expected an integer, got 'many'"),
        ("SHOPSENSE_SEARCH_DEADLINE_S", "soon", "SHOPSENSE_SEARCH_DEADLINE_S: expected a number"),
        ("SHOPSENSE_SEARCH_DEADLINE_S", "inf", "SHOPSENSE_SEARCH_DEADLINE_S: expected a finite"),
        ("SHOPSENSE_EXPLORE_RATE", "1.5", r"SHOPSENSE_EXPLORE_RATE: must be between 0 and 1"),
        ("SHOPSENSE_GRPC_WORKERS", "0", r"SHOPSENSE_GRPC_WORKERS: must be >= 1 \(got 0\)"),
        ("SHOPSENSE_GATEWAY_LISTEN", "localhost", "SHOPSENSE_GATEWAY_LISTEN: expected host:port"),
        ("SHOPSENSE_LOG_LEVEL", "loud", "SHOPSENSE_LOG_LEVEL: one of debug, info"),
    ],
)
def test_a_malformed_or_out_of_range_variable_is_named_in_the_error(
    name: str, value: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        GatewaySettings.load({name: value})


def test_each_service_reads_only_its_own_settings() -> None:
    fields = {name: {field for field, _ in record.options()} for name, record in ALL.items()}
    assert "catalog_db_url" in fields["retrieval"] and "catalog_db_url" not in fields["gateway"]
    assert "token_secret" in fields["gateway"] and "token_secret" not in fields["ranking"]
    assert "registry_db_url" in fields["trainer"] and "registry_db_url" not in fields["feedback"]
    # Each service's listen address has a variable of its own.
    environ = {"SHOPSENSE_RETRIEVAL_LISTEN": "0.0.0.0:7000"}
    assert RetrievalSettings.load(environ).listen == "0.0.0.0:7000"
    assert GatewaySettings.load(environ).listen == "127.0.0.1:50051"
    # The gateway's polling has its own interval, not intent's.
    environ = {"SHOPSENSE_INTENT_REFRESH_S": "0.5"}
    assert GatewaySettings.load(environ).refresh_s == 5.0


def test_paths_follow_the_state_folder_unless_set_themselves(tmp_path: Path) -> None:
    environ = {"SHOPSENSE_STATE_DIR": str(tmp_path)}
    assert RetrievalSettings.load(environ).catalog_db_url == f"sqlite:///{tmp_path}/catalog.db"
    assert FeedbackSettings.load(environ).feedback_db_url == f"sqlite:///{tmp_path}/feedback.db"
    trainer = TrainerSettings.load(environ)
    assert trainer.registry_db_url == f"sqlite:///{tmp_path}/registry.db"
    assert trainer.feedback_db_url == f"sqlite:///{tmp_path}/feedback.db"
    assert trainer.training_dir == tmp_path / "training"
    own = {**environ, "SHOPSENSE_CATALOG_DB_URL": "postgresql+psycopg://db/shopsense"}
    assert RetrievalSettings.load(own).catalog_db_url == "postgresql+psycopg://db/shopsense"
    # Given values (tests) win, and derived defaults follow them.
    given = RetrievalSettings.load({}, state_dir=tmp_path)
    assert given.catalog_db_url == f"sqlite:///{tmp_path}/catalog.db"


def test_describe_tells_where_each_value_came_from(tmp_path: Path) -> None:
    environ = {"SHOPSENSE_STATE_DIR": str(tmp_path), "SHOPSENSE_RERANK_DEPTH": "20"}
    rows = {row.env: row for row in RetrievalSettings.describe(environ)}
    assert rows["SHOPSENSE_STATE_DIR"].source == "environment"
    assert rows["SHOPSENSE_CATALOG_DB_URL"].source == "derived from SHOPSENSE_STATE_DIR"
    assert rows["SHOPSENSE_CATALOG_DB_URL"].value == f"sqlite:///{tmp_path}/catalog.db"
    assert rows["SHOPSENSE_GRPC_WORKERS"].source == "default"
    depth = {row.env: row for row in RankingSettings.describe(environ)}["SHOPSENSE_RERANK_DEPTH"]
    assert (depth.value, depth.default, depth.source) == (20, 50, "environment")


def test_requests_are_limited_per_service() -> None:
    limits = {
        name: record.load({}).max_message_bytes for name, record in ALL.items() if name != "client"
    }
    # A search, or a recommendation with 10,000 history events of 128-character ids
    # (about 1.5 MB); not a bulk upload.
    assert limits["gateway"] == 2 * 1024 * 1024
    assert limits["intent"] < limits["gateway"] < limits["ranking"] < limits["retrieval"]
    # 10,000 events with 4,096-character tokens fit.
    assert limits["feedback"] > 10_000 * 4_096
    override = GatewaySettings.load({"SHOPSENSE_GATEWAY_MAX_MESSAGE_BYTES": "65536"})
    assert override.max_message_bytes == 65536


def test_shopsense_config_prints_every_setting_with_value_default_and_source(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("SHOPSENSE_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("SHOPSENSE_TOKEN_SECRET", "s3cret-value")
    monkeypatch.setenv("SHOPSENSE_CANDIDATES", "40")
    assert main(["config", "gateway", "--json"]) == 0
    gateway = json.loads(capsys.readouterr().out)["gateway"]
    assert set(gateway) == {row.env for row in GatewaySettings.describe()}
    assert gateway["SHOPSENSE_CANDIDATES"] == {
        "value": 40,
        "default": 100,
        "source": "environment",
    }
    assert gateway["SHOPSENSE_TOKEN_SECRET"]["value"] == "(hidden)"  # never printed
    assert main(["config", "feedback", "--json"]) == 0
    feedback = json.loads(capsys.readouterr().out)["feedback"]
    assert feedback["SHOPSENSE_FEEDBACK_DB_URL"] == {
        "value": f"sqlite:///{tmp_path}/feedback.db",
        "default": f"sqlite:///{tmp_path}/feedback.db",
        "source": "derived from SHOPSENSE_STATE_DIR",
    }
    monkeypatch.setenv("SHOPSENSE_TOKEN_SECRET", DEV_TOKEN_SECRET)
    assert main(["config"]) == 0
    tables = capsys.readouterr().out
    assert all(f"{name} settings" in tables for name in ALL)
    assert "s3cret-value" not in tables and "(development default)" in tables
    monkeypatch.setenv("SHOPSENSE_CANDIDATES", "many")
    assert main(["config", "gateway"]) == 2
    assert "SHOPSENSE_CANDIDATES: expected an integer" in capsys.readouterr().out


def test_shopsense_config_masks_a_database_urls_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = "postgresql+psycopg://shop:pg-pass-9f2@db.internal:5432/shopsense"
    monkeypatch.setenv("SHOPSENSE_FEEDBACK_DB_URL", url)
    assert main(["config", "feedback", "--json"]) == 0
    printed = capsys.readouterr().out
    assert json.loads(printed)["feedback"]["SHOPSENSE_FEEDBACK_DB_URL"]["value"] == (
        "postgresql+psycopg://shop:***@db.internal:5432/shopsense"
    )
    assert main(["config", "feedback"]) == 0
    assert "pg-pass-9f2" not in printed + capsys.readouterr().out


def test_production_refuses_a_sqlite_store_naming_its_variable(tmp_path: Path) -> None:
    from shared.settings import FeedbackSettings, RecommendSettings, TrainerSettings

    production = {"SHOPSENSE_MODE": "production", "SHOPSENSE_STATE_DIR": str(tmp_path)}
    for settings_class, variables in (
        (FeedbackSettings, ["SHOPSENSE_FEEDBACK_DB_URL"]),
        (RecommendSettings, ["SHOPSENSE_FEEDBACK_DB_URL"]),
        (TrainerSettings, ["SHOPSENSE_REGISTRY_DB_URL", "SHOPSENSE_FEEDBACK_DB_URL"]),
    ):
        problems = settings_class.load(production).shared_database_problems()
        assert [problem.split(":")[0] for problem in problems] == variables
        assert all("production needs the database every" in problem for problem in problems)
        shared = {name: "postgresql+psycopg://db/shopsense" for name in variables}
        assert settings_class.load({**production, **shared}).shared_database_problems() == []
        embedded = settings_class.load({"SHOPSENSE_STATE_DIR": str(tmp_path)})
        assert embedded.shared_database_problems() == []
    # The trainer without a feedback store (reports and retraining off) is accepted too.
    trainer = TrainerSettings.load(
        {**production, "SHOPSENSE_REGISTRY_DB_URL": "postgresql+psycopg://db/shopsense"},
        feedback_db_url="",
    )
    assert trainer.shared_database_problems() == []
