"""The erasure list: one row per id a shopper's erasure named (its key, never the id), in
the order erased, which the trainer applies to the training folders written before it.

Revision ID: f0002
Revises: f0001
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "f0002"
down_revision = "f0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if "shopper_erasures" in sa.inspect(op.get_bind()).get_table_names():
        return
    op.create_table(
        "shopper_erasures",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("shopper_erasures")
