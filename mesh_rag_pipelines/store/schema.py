"""Tables of the index store, all in the `mesh_rag` schema of one PostgreSQL database.

Document state, chunks, the embedding cache and the index-version tables live in the same
database so that replacing a document's chunks and updating its state is one transaction.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pgvector.sqlalchemy import Vector
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    Table,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SCHEMA = "mesh_rag"


class Base(DeclarativeBase):
    metadata = MetaData(schema=SCHEMA)


class DocumentState(Base):
    """Current version of every document a product has seen; deleted ones stay as tombstones."""

    __tablename__ = "document_state"
    product: Mapped[str] = mapped_column(Text, primary_key=True)
    doc_id: Mapped[str] = mapped_column(Text, primary_key=True)
    shard: Mapped[int] = mapped_column(SmallInteger)
    version: Mapped[int] = mapped_column(BigInteger)
    checksum: Mapped[str | None] = mapped_column(Text)
    title: Mapped[str | None] = mapped_column(Text)
    content: Mapped[str | None] = mapped_column(Text)
    doc_metadata: Mapped[dict[str, Any]] = mapped_column("metadata", JSONB, default=dict)
    acl_groups: Mapped[list[str]] = mapped_column(ARRAY(Text), default=list)
    document_type: Mapped[str] = mapped_column(Text)
    source_updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    observed_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)

    __table_args__ = (Index("document_state_shard", "product", "shard"),)


class Chunk(Base):
    """The chunk set: what the product's chunker makes of each live document version."""

    __tablename__ = "chunk"
    product: Mapped[str] = mapped_column(Text, primary_key=True)
    chunker: Mapped[str] = mapped_column(Text, primary_key=True)
    doc_id: Mapped[str] = mapped_column(Text, primary_key=True)
    chunk_no: Mapped[int] = mapped_column(Integer, primary_key=True)
    doc_version: Mapped[int] = mapped_column(BigInteger)
    section: Mapped[str] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    text_hash: Mapped[str] = mapped_column(Text)


class EmbeddingCache(Base):
    """Vectors by (model id, text hash): a text is sent to a model at most once."""

    __tablename__ = "embedding_cache"
    model_id: Mapped[str] = mapped_column(Text, primary_key=True)
    text_hash: Mapped[str] = mapped_column(Text, primary_key=True)
    embedding = mapped_column(Vector(), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class IndexVersion(Base):
    """One (chunker, model) pair of one product, with its own vector table."""

    __tablename__ = "index_version"
    id: Mapped[str] = mapped_column(Text, primary_key=True)
    product: Mapped[str] = mapped_column(Text, index=True)
    chunker: Mapped[str] = mapped_column(Text)
    model_id: Mapped[str] = mapped_column(Text)
    dimensions: Mapped[int] = mapped_column(Integer)
    distance: Mapped[str] = mapped_column(Text)
    table_name: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text)  # building | validated | live | retired
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class IndexedDocument(Base):
    """Which version of a document an index version holds, and since when."""

    __tablename__ = "indexed_document"
    index_version: Mapped[str] = mapped_column(Text, primary_key=True)
    doc_id: Mapped[str] = mapped_column(Text, primary_key=True)
    doc_version: Mapped[int] = mapped_column(BigInteger)
    chunk_count: Mapped[int] = mapped_column(Integer)
    indexed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ServingPointer(Base):
    """The live index version of each product; swapping it is one UPDATE."""

    __tablename__ = "serving_pointer"
    product: Mapped[str] = mapped_column(Text, primary_key=True)
    index_version: Mapped[str] = mapped_column(Text)
    swapped_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class SourceCursor(Base):
    """Per product and shard: how far a source has been read (watermarks)."""

    __tablename__ = "source_cursor"
    product: Mapped[str] = mapped_column(Text, primary_key=True)
    shard: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    name: Mapped[str] = mapped_column(Text, primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class LandingObject(Base):
    """Landing-zone objects already applied, per shard, so that a run reads only new ones."""

    __tablename__ = "landing_object"
    product: Mapped[str] = mapped_column(Text, primary_key=True)
    shard: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    object_key: Mapped[str] = mapped_column(Text, primary_key=True)
    etag: Mapped[str] = mapped_column(Text, primary_key=True)
    applied_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class QuarantinedRecord(Base):
    """Input that could not become a document, with the reason; nothing is silently dropped."""

    __tablename__ = "quarantine"
    product: Mapped[str] = mapped_column(Text, primary_key=True)
    source_ref: Mapped[str] = mapped_column(Text, primary_key=True)
    record_ref: Mapped[str] = mapped_column(Text, primary_key=True)
    field: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    raw: Mapped[str | None] = mapped_column(Text)
    quarantined_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


_OPCLASS = {"cosine": "vector_cosine_ops", "inner_product": "vector_ip_ops", "l2": "vector_l2_ops"}


def index_table(table_name: str, dimensions: int, distance: str) -> Table:
    """The vector table of one index version: one row per chunk, with full provenance."""
    metadata = MetaData(schema=SCHEMA)
    table = Table(
        table_name,
        metadata,
        Column("doc_id", Text, primary_key=True),
        Column("chunk_no", Integer, primary_key=True),
        Column("product", Text, nullable=False),
        Column("shard", SmallInteger, nullable=False),
        Column("doc_version", BigInteger, nullable=False),
        Column("source_checksum", Text, nullable=False),
        Column("chunker_version", Text, nullable=False),
        Column("embedding_model", Text, nullable=False),
        Column("section", Text, nullable=False),
        Column("title", Text),
        Column("text", Text, nullable=False),
        Column("text_hash", Text, nullable=False),
        Column("metadata", JSONB, nullable=False),
        Column("acl_groups", ARRAY(Text), nullable=False),
        Column("document_type", Text, nullable=False),
        Column("source_updated_at", DateTime(timezone=True)),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("embedding", Vector(dimensions), nullable=False),
    )
    Index(
        f"{table_name}_hnsw",
        table.c.embedding,
        postgresql_using="hnsw",
        postgresql_with={"m": 16, "ef_construction": 64},
        postgresql_ops={"embedding": _OPCLASS[distance]},
    )
    Index(f"{table_name}_acl", table.c.acl_groups, postgresql_using="gin")
    return table
