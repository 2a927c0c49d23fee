"""The catalog's tables as of the first versioned release: products, staging, meta.

Adopts a catalog file made before migrations (no version table): a table that exists is
left as it is (its schema is this revision's: the catalog never changed before), a
missing one is created.

Revision ID: c0001
Revises:
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "c0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    present = set(sa.inspect(op.get_bind()).get_table_names())
    if "catalog_products" not in present:
        op.create_table(
            "catalog_products",
            sa.Column("product_id", sa.String(128), primary_key=True),
            sa.Column("row", sa.Integer(), nullable=False),
            sa.Column("data", sa.String(), nullable=False),
            sa.Column("embedding", sa.LargeBinary(), nullable=False),
            sa.Column("embedding_dim", sa.Integer(), nullable=False),
            sa.Column("embedding_version", sa.String(), nullable=False),
            sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        )
        op.create_index("ix_catalog_products_row", "catalog_products", ["row"], unique=True)
    if "catalog_staging" not in present:
        op.create_table(
            "catalog_staging",
            sa.Column("product_id", sa.String(128), primary_key=True),
            sa.Column("embedding", sa.LargeBinary(), nullable=False),
            sa.Column("embedding_version", sa.String(), nullable=False),
            sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        )
    if "catalog_meta" not in present:
        op.create_table(
            "catalog_meta",
            sa.Column("key", sa.String(64), primary_key=True),
            sa.Column("value", sa.String(), nullable=False),
        )


def downgrade() -> None:
    op.drop_table("catalog_meta")
    op.drop_table("catalog_staging")
    op.drop_index("ix_catalog_products_row", "catalog_products")
    op.drop_table("catalog_products")
