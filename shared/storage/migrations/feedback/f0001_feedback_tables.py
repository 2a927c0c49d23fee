"""The feedback store's tables as of the first versioned release: events and served pages.

Adopts a database made before migrations (no version table), which the code of that time
kept current with hand-written statements on every open; this revision does what they did,
once: a missing table is created; an existing ``feedback_events`` gets the columns added
after the first release, loses the indexes on shopper and product (they cost ingestion:
see ``FeedbackEvent``) and gets the index on ``received_at``.

Revision ID: f0001
Revises:
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "f0001"
down_revision = None
branch_labels = None
depends_on = None

_ADDED_COLUMNS = {
    "experiment": sa.String(64),
    "team": sa.String(1),
    "query": sa.String(),
    "explored": sa.Boolean(),
    "placement": sa.String(32),
}
_DROPPED_INDEXES = ("ix_feedback_events_user_id", "ix_feedback_events_product_id")


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    present = set(inspector.get_table_names())
    if "feedback_events" not in present:
        op.create_table(
            "feedback_events",
            sa.Column("event_id", sa.String(128), primary_key=True),
            sa.Column("type", sa.String(16), nullable=False),
            sa.Column("occurred_at", _utc(), nullable=False),
            sa.Column("received_at", _utc(), nullable=False),
            sa.Column("user_id", sa.String(128)),
            sa.Column("session_id", sa.String(128)),
            sa.Column("product_id", sa.String(128), nullable=False),
            sa.Column("attribution_token", sa.String()),
            sa.Column("request_id", sa.String()),
            sa.Column("arm", sa.String()),
            sa.Column("experiment", sa.String(64)),
            sa.Column("team", sa.String(1)),
            sa.Column("query", sa.String()),
            sa.Column("explored", sa.Boolean()),
            sa.Column("position", sa.Integer()),
            sa.Column("amount_micros", sa.BigInteger()),
            sa.Column("currency", sa.String(3)),
            sa.Column("quantity", sa.Integer(), nullable=False),
            sa.Column("placement", sa.String(32)),
        )
        op.create_index("ix_feedback_events_received_at", "feedback_events", ["received_at"])
        op.create_index("ix_feedback_events_request_id", "feedback_events", ["request_id"])
    else:
        columns = {c["name"] for c in inspector.get_columns("feedback_events")}
        indexes = {i["name"] for i in inspector.get_indexes("feedback_events")}
        for name, kind in _ADDED_COLUMNS.items():
            if name not in columns:
                op.add_column("feedback_events", sa.Column(name, kind))
        for index in _DROPPED_INDEXES:
            if index in indexes:
                op.drop_index(index, "feedback_events")
        for column in ("received_at", "request_id"):
            if f"ix_feedback_events_{column}" not in indexes:
                op.create_index(f"ix_feedback_events_{column}", "feedback_events", [column])
    if "recommendation_served" not in present:
        op.create_table(
            "recommendation_served",
            sa.Column("id", sa.Integer(), primary_key=True),
            sa.Column("request_id", sa.String(128), nullable=False),
            sa.Column("placement", sa.String(32), nullable=False),
            sa.Column("served_at", _utc(), nullable=False),
            sa.Column("product_id", sa.String(128), nullable=False),
            sa.Column("position", sa.Integer(), nullable=False),
            sa.Column("parts", sa.String(), nullable=False),
        )
        op.create_index(
            "ix_recommendation_served_served_at", "recommendation_served", ["served_at"]
        )
        op.create_index(
            "ix_recommendation_served_request_id", "recommendation_served", ["request_id"]
        )


def downgrade() -> None:
    op.drop_table("recommendation_served")
    op.drop_table("feedback_events")
