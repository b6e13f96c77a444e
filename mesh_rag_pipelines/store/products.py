"""Removing a product the mesh gave up on: everything the store holds for it, in one
transaction. Its contract need not exist any more; the release history keeps a row saying who
removed it, when and why."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, delete, exists, select, update
from sqlalchemy.orm import aliased

from mesh_rag_pipelines.store.index_versions import (
    lock_product_releases,
    product_versions,
    record_event,
)
from mesh_rag_pipelines.store.schema import (
    Chunk,
    DocumentState,
    EmbeddingCache,
    IndexedDocument,
    IndexVersion,
    LandingObject,
    ProductLayout,
    QuarantinedRecord,
    ServingPointer,
    SourceCursor,
    index_table,
)


@dataclass(frozen=True)
class DroppedProduct:
    product: str
    documents: int
    index_versions: list[str]
    cache_entries: int


def drop_product(engine: Engine, product: str, *, actor: str, reason: str | None) -> DroppedProduct:
    """Drop every index version's table and every row of `product`: state, chunks, cursors,
    the landing ledger, quarantine, its serving pointer and layout, and cached vectors no other
    product's chunk uses."""
    with engine.begin() as conn:
        lock_product_releases(conn, product)
        versions = product_versions(conn, product)
        for version in versions:
            index_table(version.table_name, version.dimensions, version.distance).drop(
                conn, checkfirst=True
            )
            record_event(conn, product, "dropped", version.id, actor=actor, reason=reason)
        ids = [v.id for v in versions]
        conn.execute(delete(IndexedDocument).where(IndexedDocument.index_version.in_(ids)))
        conn.execute(
            update(IndexVersion)
            .where(IndexVersion.product == product, IndexVersion.dropped_at.is_(None))
            .values(status="retired", dropped_at=datetime.now(UTC))
        )
        hashes = select(Chunk.text_hash).where(Chunk.product == product).scalar_subquery()
        other = aliased(Chunk)
        cache = conn.execute(
            delete(EmbeddingCache).where(
                EmbeddingCache.text_hash.in_(hashes),
                ~exists().where(
                    other.text_hash == EmbeddingCache.text_hash, other.product != product
                ),
            )
        ).rowcount
        documents = conn.execute(
            delete(DocumentState).where(DocumentState.product == product)
        ).rowcount
        for table in (Chunk, SourceCursor, LandingObject, QuarantinedRecord, ProductLayout):
            conn.execute(delete(table).where(table.product == product))  # type: ignore[attr-defined]
        conn.execute(delete(ServingPointer).where(ServingPointer.product == product))
    return DroppedProduct(product, documents, ids, cache)
