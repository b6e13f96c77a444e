"""The store as first released: state, chunks, cache, index-version registry, serving pointer,
cursors, the landing ledger and quarantine. Index-version tables are created by the code that
registers a version, one per version."""

import sqlalchemy as sa
from alembic import op
from pgvector.sqlalchemy import Vector
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

revision = "0001"
down_revision = None

SCHEMA = "mesh_rag"
NOW = sa.text("now()")


def upgrade() -> None:
    op.create_table(
        "chunk",
        sa.Column("product", sa.Text(), nullable=False),
        sa.Column("chunker", sa.Text(), nullable=False),
        sa.Column("doc_id", sa.Text(), nullable=False),
        sa.Column("chunk_no", sa.Integer(), nullable=False),
        sa.Column("doc_version", sa.BigInteger(), nullable=False),
        sa.Column("section", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("text_hash", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("product", "chunker", "doc_id", "chunk_no"),
        schema=SCHEMA,
    )
    op.create_table(
        "document_state",
        sa.Column("product", sa.Text(), nullable=False),
        sa.Column("doc_id", sa.Text(), nullable=False),
        sa.Column("shard", sa.SmallInteger(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("checksum", sa.Text()),
        sa.Column("title", sa.Text()),
        sa.Column("content", sa.Text()),
        sa.Column("metadata", JSONB(), nullable=False),
        sa.Column("acl_groups", ARRAY(sa.Text()), nullable=False),
        sa.Column("document_type", sa.Text(), nullable=False),
        sa.Column("source_updated_at", sa.DateTime(timezone=True)),
        sa.Column("observed_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("product", "doc_id"),
        schema=SCHEMA,
    )
    op.create_index("document_state_shard", "document_state", ["product", "shard"], schema=SCHEMA)
    op.create_table(
        "embedding_cache",
        sa.Column("model_id", sa.Text(), nullable=False),
        sa.Column("text_hash", sa.Text(), nullable=False),
        sa.Column("embedding", Vector(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.PrimaryKeyConstraint("model_id", "text_hash"),
        schema=SCHEMA,
    )
    op.create_table(
        "index_version",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("product", sa.Text(), nullable=False),
        sa.Column("chunker", sa.Text(), nullable=False),
        sa.Column("model_id", sa.Text(), nullable=False),
        sa.Column("dimensions", sa.Integer(), nullable=False),
        sa.Column("distance", sa.Text(), nullable=False),
        sa.Column("table_name", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("metrics", JSONB(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_mesh_rag_index_version_product", "index_version", ["product"], schema=SCHEMA
    )
    op.create_table(
        "indexed_document",
        sa.Column("index_version", sa.Text(), nullable=False),
        sa.Column("doc_id", sa.Text(), nullable=False),
        sa.Column("doc_version", sa.BigInteger(), nullable=False),
        sa.Column("chunk_count", sa.Integer(), nullable=False),
        sa.Column("indexed_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.PrimaryKeyConstraint("index_version", "doc_id"),
        schema=SCHEMA,
    )
    op.create_table(
        "landing_object",
        sa.Column("product", sa.Text(), nullable=False),
        sa.Column("shard", sa.SmallInteger(), nullable=False),
        sa.Column("object_key", sa.Text(), nullable=False),
        sa.Column("etag", sa.Text(), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.PrimaryKeyConstraint("product", "shard", "object_key", "etag"),
        schema=SCHEMA,
    )
    op.create_table(
        "quarantine",
        sa.Column("product", sa.Text(), nullable=False),
        sa.Column("source_ref", sa.Text(), nullable=False),
        sa.Column("record_ref", sa.Text(), nullable=False),
        sa.Column("field", sa.Text()),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("raw", sa.Text()),
        sa.Column("quarantined_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.PrimaryKeyConstraint("product", "source_ref", "record_ref"),
        schema=SCHEMA,
    )
    op.create_table(
        "serving_pointer",
        sa.Column("product", sa.Text(), nullable=False),
        sa.Column("index_version", sa.Text(), nullable=False),
        sa.Column("swapped_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.PrimaryKeyConstraint("product"),
        schema=SCHEMA,
    )
    op.create_table(
        "source_cursor",
        sa.Column("product", sa.Text(), nullable=False),
        sa.Column("shard", sa.SmallInteger(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("product", "shard", "name"),
        schema=SCHEMA,
    )
