"""Index versions become complete records: the full spec each was built with, when its HNSW
index was built, validated, retired and dropped; and a release history.

Versions registered before keep their ids. Their spec is read back from the chunker identity
and model id they were registered with, and their tables already carry an HNSW index.
"""

import json
import re

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0002"
down_revision = "0001"

SCHEMA = "mesh_rag"
NOW = sa.text("now()")
_CHUNKER = re.compile(r"^(?P<name>[a-z_]+)-v(?P<version>\d+)-w(?P<max>\d+)-o(?P<overlap>\d+)$")


def _spec(chunker: str, model_id: str, distance: str) -> dict:
    chunking = _CHUNKER.match(chunker)
    assert chunking, f"unexpected chunker identity {chunker!r}"
    provider, *model, revision_, dimensions = model_id.split(":")
    return {
        "chunking": {
            "name": chunking["name"],
            "version": int(chunking["version"]),
            "max_words": int(chunking["max"]),
            "overlap_words": int(chunking["overlap"]),
        },
        "embedding": {
            "provider": provider,
            "model": ":".join(model),
            "dimensions": int(dimensions),
            "distance": distance,
            "revision": revision_,
        },
        "index": {"m": 16, "ef_construction": 64, "ef_search": 100},
    }


def upgrade() -> None:
    timestamp = sa.DateTime(timezone=True)
    for column in ("index_built_at", "validated_at", "retired_at", "dropped_at"):
        op.add_column("index_version", sa.Column(column, timestamp), schema=SCHEMA)
    op.add_column("index_version", sa.Column("spec", JSONB()), schema=SCHEMA)
    conn = op.get_bind()
    versions = conn.execute(
        sa.text(f"SELECT id, chunker, model_id, distance FROM {SCHEMA}.index_version")
    ).all()
    for version in versions:
        conn.execute(
            sa.text(
                f"UPDATE {SCHEMA}.index_version SET spec = CAST(:spec AS jsonb), "
                "index_built_at = created_at WHERE id = :id"
            ),
            {"id": version.id, "spec": json.dumps(_spec(*version[1:]))},
        )
    op.alter_column("index_version", "spec", nullable=False, schema=SCHEMA)
    op.create_table(
        "release_event",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("product", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("version", sa.Text(), nullable=False),
        sa.Column("previous_version", sa.Text()),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text()),
        sa.Column("forced", sa.Boolean(), nullable=False),
        sa.Column("metrics", JSONB(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_mesh_rag_release_event_product", "release_event", ["product"], schema=SCHEMA
    )
