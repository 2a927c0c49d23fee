"""The registry's tables as of the first versioned release: training jobs, model versions,
experiments and the retrain schedule's runs (``services.trainer.schedule``).

Adopts a database made before migrations (no version table): a table that exists is left
as it is (none of these changed before), a missing one is created.

Revision ID: r0001
Revises:
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "r0001"
down_revision = None
branch_labels = None
depends_on = None


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _training_jobs() -> None:
    op.create_table(
        "training_jobs",
        sa.Column("job_id", sa.String(32), primary_key=True),
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("total_steps", sa.Integer(), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("metrics_json", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("dataset", sa.Text(), nullable=False),
        sa.Column("hyperparameters_json", sa.Text(), nullable=False),
        sa.Column("parent_version", sa.Integer()),
        sa.Column("teacher_version", sa.Integer()),
        sa.Column("publish", sa.Boolean(), nullable=False),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("started_at", _utc()),
        sa.Column("finished_at", _utc()),
        sa.Column("result_version", sa.Integer()),
    )
    op.create_index("ix_training_jobs_model", "training_jobs", ["model"])
    op.create_index("ix_training_jobs_state", "training_jobs", ["state"])


def _model_versions() -> None:
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("parent_version", sa.Integer()),
        sa.Column("data_fingerprint", sa.String(128), nullable=False),
        sa.Column("hyperparameters_json", sa.Text(), nullable=False),
        sa.Column("dev_metrics_json", sa.Text(), nullable=False),
        sa.Column("offline_metrics_json", sa.Text(), nullable=False),
        sa.Column("export_json", sa.Text(), nullable=False),
        sa.Column("training_seconds", sa.Float(), nullable=False),
        sa.Column("checkpoint_dir", sa.Text(), nullable=False),
        sa.Column("export_dir", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("job_id", sa.String(32), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("served_at", _utc()),
        sa.UniqueConstraint("model", "version", name="uq_model_versions_model_version"),
    )
    op.create_index("ix_model_versions_model", "model_versions", ["model"])
    op.create_index("ix_model_versions_status", "model_versions", ["status"])
    # At most one SERVING version per model, enforced by the database.
    op.create_index(
        "uq_model_versions_one_serving",
        "model_versions",
        ["model"],
        unique=True,
        sqlite_where=sa.text("status = 'SERVING'"),
        postgresql_where=sa.text("status = 'SERVING'"),
    )


def _experiments() -> None:
    op.create_table(
        "experiments",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("definition_json", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("started_at", _utc()),
        sa.Column("stopped_at", _utc()),
        sa.Column("stop_reason", sa.Text(), nullable=False),
    )
    op.create_index("ix_experiments_state", "experiments", ["state"])
    # At most one RUNNING experiment.
    op.create_index(
        "uq_experiments_one_running",
        "experiments",
        ["state"],
        unique=True,
        sqlite_where=sa.text("state = 'RUNNING'"),
        postgresql_where=sa.text("state = 'RUNNING'"),
    )


def _scheduled_retrains() -> None:
    op.create_table(
        "scheduled_retrains",
        sa.Column("job_id", sa.String(32), primary_key=True),
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("new_events", sa.Integer(), nullable=False),
        sa.Column("since", _utc()),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("trigger", sa.Text(), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("followed_up", sa.Boolean(), nullable=False),
    )
    op.create_index("ix_scheduled_retrains_model", "scheduled_retrains", ["model"])
    op.create_index("ix_scheduled_retrains_followed_up", "scheduled_retrains", ["followed_up"])


_TABLES = {
    "training_jobs": _training_jobs,
    "model_versions": _model_versions,
    "experiments": _experiments,
    "scheduled_retrains": _scheduled_retrains,
}


def upgrade() -> None:
    present = set(sa.inspect(op.get_bind()).get_table_names())
    for name, create in _TABLES.items():
        if name not in present:
            create()


def downgrade() -> None:
    for name in reversed(list(_TABLES)):
        op.drop_table(name)
