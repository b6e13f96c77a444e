"""The shard count of each product, recorded: state, cursors, the landing ledger and every
index row carry a shard computed from it, so a contract that changes it must re-shard first.
Products already in the store were sharded by the fixed count of earlier releases, 4."""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"

SCHEMA = "mesh_rag"
EARLIER_FIXED_SHARDS = 4


def upgrade() -> None:
    op.create_table(
        "product_layout",
        sa.Column("product", sa.Text(), primary_key=True),
        sa.Column("shards", sa.SmallInteger(), nullable=False),
        sa.Column(
            "recorded_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        schema=SCHEMA,
    )
    op.execute(
        f"INSERT INTO {SCHEMA}.product_layout (product, shards) "
        f"SELECT DISTINCT product, {EARLIER_FIXED_SHARDS} FROM {SCHEMA}.document_state"
    )


def downgrade() -> None:
    op.drop_table("product_layout", schema=SCHEMA)
