"""Tables of the index store, all in the `mesh_rag` schema of one PostgreSQL database.

Document state, chunks, the embedding cache and the index-version tables live in the same
database so that replacing a document's chunks and updating its state is one transaction.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pgvector.sqlalchemy import Vector
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Identity,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    Table,
    Text,
    func,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, REAL
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from mesh_rag_pipelines.contracts.model import ChunkingSpec, EmbeddingSpec, IndexSpec

SCHEMA = "mesh_rag"
# PostgreSQL's identifier limit (NAMEDATALEN - 1): a longer name is silently truncated.
MAX_IDENTIFIER = 63
_QUOTE = postgresql.dialect().identifier_preparer


def qualified(table_name: str) -> str:
    """`mesh_rag."<table>"`, quoted where raw SQL names a store table (registry values are
    quoted too: a name is never trusted because a validator ran elsewhere)."""
    return f"{_QUOTE.quote(SCHEMA)}.{_QUOTE.quote(table_name)}"


def index_table_name(version_id: str) -> str:
    return f"idx_{version_id}"


def _acl_index_name(table_name: str) -> str:
    return f"{table_name}_acl"


def _hnsw_index_name(table_name: str) -> str:
    return f"{table_name}_hnsw"


def derived_identifiers(table_name: str) -> list[str]:
    """Every identifier of an index-version table: its own name and those derived from it (the
    contract bounds product names so that each fits in MAX_IDENTIFIER)."""
    return [
        table_name,
        f"{table_name}_pkey",
        _acl_index_name(table_name),
        _hnsw_index_name(table_name),
    ]


class Base(DeclarativeBase):
    metadata = MetaData(schema=SCHEMA)


class DocumentState(Base):
    """Current version of every document a product has seen; deleted ones stay as tombstones.

    `acl_groups` is who may read the document now: the product's groups, narrowed to the ones
    the record names (`doc_groups`) if it names any. A forgotten document (right to be
    forgotten) keeps no content and never comes back, whatever a source replays.
    """

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
    doc_groups: Mapped[list[str] | None] = mapped_column(ARRAY(Text))
    forgotten_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

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
    """One (chunker, model, index parameters) triple of one product, with its own vector table.

    `spec` keeps everything the version was built with, so that it can be maintained, served
    and rolled back to after the contract has moved on. Status: building -> validated or
    failed -> live -> validated (the rollback target once replaced) -> retired.
    """

    __tablename__ = "index_version"
    id: Mapped[str] = mapped_column(Text, primary_key=True)
    product: Mapped[str] = mapped_column(Text, index=True)
    chunker: Mapped[str] = mapped_column(Text)
    model_id: Mapped[str] = mapped_column(Text)
    dimensions: Mapped[int] = mapped_column(Integer)
    distance: Mapped[str] = mapped_column(Text)
    table_name: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    spec: Mapped[dict[str, Any]] = mapped_column(JSONB)
    index_built_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    validated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    retired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    dropped_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    @property
    def chunking_spec(self) -> ChunkingSpec:
        return ChunkingSpec.model_validate(self.spec["chunking"])

    @property
    def embedding_spec(self) -> EmbeddingSpec:
        return EmbeddingSpec.model_validate(self.spec["embedding"])

    @property
    def index_spec(self) -> IndexSpec:
        return IndexSpec.model_validate(self.spec["index"])


class ReleaseEvent(Base):
    """The release history: who did what to which index version, when, why, with what result."""

    __tablename__ = "release_event"
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    product: Mapped[str] = mapped_column(Text, index=True)
    action: Mapped[str] = mapped_column(Text)
    version: Mapped[str] = mapped_column(Text)
    previous_version: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    forced: Mapped[bool] = mapped_column(Boolean, default=False)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


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


class ProductLayout(Base):
    """The shard count a product's stored rows were computed with (see store/layout.py)."""

    __tablename__ = "product_layout"
    product: Mapped[str] = mapped_column(Text, primary_key=True)
    shards: Mapped[int] = mapped_column(SmallInteger)
    recorded_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


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
    doc_id: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("quarantine_doc", "product", "doc_id"),)


class ErasureAudit(Base):
    """What an erasure removed, when, for whom and why; never the content."""

    __tablename__ = "erasure_audit"
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    product: Mapped[str] = mapped_column(Text)
    doc_id: Mapped[str] = mapped_column(Text)
    versions: Mapped[list[str]] = mapped_column(ARRAY(Text))
    index_rows_removed: Mapped[int] = mapped_column(Integer)
    chunks_removed: Mapped[int] = mapped_column(Integer)
    cache_entries_removed: Mapped[int] = mapped_column(Integer)
    quarantined_removed: Mapped[int] = mapped_column(Integer)
    actor: Mapped[str] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # Verified by PostgreSQL: the role the erasing transaction ran as (migration 0006).
    actor_role: Mapped[str | None] = mapped_column(Text)
    # Who the caller says they are (an OS user, a run's launcher): recorded, not verified.
    actor_claimed: Mapped[str | None] = mapped_column(Text)


# --- the retrieval service's records (migration 0007) ------------------------------------------


class ApiKey(Base):
    """A service identity: the token's secret is never stored, only its SHA-256. The serving
    role cannot read this table; it asks `mesh_rag.api_key_identity(id, secret_hash)`."""

    __tablename__ = "api_key"
    id: Mapped[str] = mapped_column(Text, primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    secret_hash: Mapped[str] = mapped_column(Text)
    groups: Mapped[list[str]] = mapped_column(ARRAY(Text))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str | None] = mapped_column(Text)


class QueryLog(Base):
    """One request the service answered: who asked (the verified subject), the query masked,
    what was served from which index versions, how long each part took, or why it abstained.
    The serving role may insert rows, never read them."""

    __tablename__ = "query_log"
    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    response_id: Mapped[uuid.UUID] = mapped_column(postgresql.UUID(as_uuid=True), unique=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    subject: Mapped[str] = mapped_column(Text)
    identity_kind: Mapped[str] = mapped_column(Text)
    route: Mapped[str] = mapped_column(Text)
    query_masked: Mapped[str] = mapped_column(Text)
    products: Mapped[list[str]] = mapped_column(ARRAY(Text))
    index_versions: Mapped[list[str]] = mapped_column(ARRAY(Text))
    k: Mapped[int] = mapped_column(Integer)
    unit: Mapped[str] = mapped_column(Text)
    embed_ms: Mapped[float | None] = mapped_column(REAL)
    search_ms: Mapped[float | None] = mapped_column(REAL)
    total_ms: Mapped[float] = mapped_column(REAL)
    # `product/doc_id#chunk_no`, in rank order.
    result_ids: Mapped[list[str]] = mapped_column(ARRAY(Text))
    abstention: Mapped[str | None] = mapped_column(Text)
    status: Mapped[int] = mapped_column(Integer)


class Feedback(Base):
    """A caller's judgment of a response: helpful or not, and which results were right
    (`product/doc_id`). The serving role may insert rows, never read them."""

    __tablename__ = "feedback"
    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    response_id: Mapped[uuid.UUID] = mapped_column(postgresql.UUID(as_uuid=True))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    subject: Mapped[str] = mapped_column(Text)
    helpful: Mapped[bool] = mapped_column(Boolean)
    right_results: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default="{}")
    comment: Mapped[str | None] = mapped_column(Text)


class ProductStatus(Base):
    """A product's freshness as last judged (by the freshness check or `mesh-rag products`):
    what the retrieval service's catalog says, read as the serving role."""

    __tablename__ = "product_status"
    product: Mapped[str] = mapped_column(Text, primary_key=True)
    in_sync: Mapped[bool] = mapped_column(Boolean)
    waiting_changes: Mapped[int] = mapped_column(Integer)
    unindexed_documents: Mapped[int] = mapped_column(Integer)
    oldest_change: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    judged_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class EvaluationCandidate(Base):
    """A negative judgment's query with the documents marked right, for one product; reviewed
    (accepted or rejected) before it joins the product's evaluation set."""

    __tablename__ = "evaluation_candidate"
    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    feedback_id: Mapped[int] = mapped_column(BigInteger)
    product: Mapped[str] = mapped_column(Text)
    query: Mapped[str] = mapped_column(Text)
    expected_doc_ids: Mapped[list[str]] = mapped_column(ARRAY(Text))
    status: Mapped[str] = mapped_column(Text, server_default="candidate")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    reviewed_by: Mapped[str | None] = mapped_column(Text)
    reviewed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    review_reason: Mapped[str | None] = mapped_column(Text)


OPCLASS = {"cosine": "vector_cosine_ops", "inner_product": "vector_ip_ops", "l2": "vector_l2_ops"}


def index_table(table_name: str, dimensions: int, distance: str) -> Table:
    """The vector table of one index version: one row per chunk, with full provenance.

    Its HNSW index is not part of it: an empty version is bulk-loaded first and indexed once
    complete (`hnsw_index`), which costs a fraction of inserting into the graph row by row.
    """
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
    Index(_acl_index_name(table_name), table.c.acl_groups, postgresql_using="gin")
    return table


def hnsw_index(
    table_name: str, dimensions: int, distance: str, m: int, ef_construction: int
) -> Index:
    """The HNSW index of an index-version table, on a copy of the table of its own, so that
    creating the table never creates it."""
    table = index_table(table_name, dimensions, distance)
    return Index(
        _hnsw_index_name(table_name),
        table.c.embedding,
        postgresql_using="hnsw",
        postgresql_with={"m": m, "ef_construction": ef_construction},
        postgresql_ops={"embedding": OPCLASS[distance]},
    )
