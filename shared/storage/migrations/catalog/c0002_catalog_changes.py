"""The catalog's change log: one row per committed write, in commit order, so that every
retrieval replica can apply the others' upserts, deletes and version swaps.

The log starts with one "swap" row (reload everything), so that its first seq, which is
also the catalog's generation, is 1 on every database, with products or without.

Revision ID: c0002
Revises: c0001
Create Date: 2026-12-01
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "c0002"
down_revision = "c0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    changes = op.create_table(
        "catalog_changes",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("product_ids", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        # AUTOINCREMENT: SQLite never reuses a seq, even once the log is pruned.
        sqlite_autoincrement=True,
    )
    op.create_index("ix_catalog_changes_created_at", "catalog_changes", ["created_at"])
    now = datetime.now(UTC)
    if op.get_bind().dialect.name == "sqlite":
        now = now.replace(tzinfo=None)  # UTCDateTime's storage: naive UTC text
    op.bulk_insert(changes, [{"kind": "swap", "product_ids": "[]", "created_at": now}])


def downgrade() -> None:
    op.drop_index("ix_catalog_changes_created_at", "catalog_changes")
    op.drop_table("catalog_changes")
