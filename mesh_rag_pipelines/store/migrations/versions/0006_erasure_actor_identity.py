"""Who erased a document, told apart: the database role the erasure ran as (verified by
PostgreSQL) and who the caller claims to be (the OS user of a command, the launcher of a Dagster
run), each in a column of its own. Erasures recorded earlier have neither: their `actor` is what
the caller claimed."""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"

SCHEMA = "mesh_rag"


def upgrade() -> None:
    op.add_column("erasure_audit", sa.Column("actor_role", sa.Text()), schema=SCHEMA)
    op.add_column("erasure_audit", sa.Column("actor_claimed", sa.Text()), schema=SCHEMA)


def downgrade() -> None:
    op.drop_column("erasure_audit", "actor_claimed", schema=SCHEMA)
    op.drop_column("erasure_audit", "actor_role", schema=SCHEMA)
