"""Right to be forgotten: one document erased from everything the store derived from it.

In one transaction, under the document's lock: its rows leave every index version's table
(retired ones too), its indexed records and chunk sets go, embedding-cache entries that no other
chunk uses are deleted, its quarantined records go (by id, or by a raw copy that names it), and
its state keeps no title, content or metadata and is marked forgotten, with a version no source
can exceed, so neither a replay of old change events nor a re-read of a polled source brings it
back. An audit row records what was removed, when, by whom and why, never the content.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, delete, exists, insert, or_, select, update
from sqlalchemy.orm import aliased

from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.store.index_versions import product_versions
from mesh_rag_pipelines.store.locks import lock_documents
from mesh_rag_pipelines.store.schema import (
    Chunk,
    DocumentState,
    EmbeddingCache,
    ErasureAudit,
    IndexedDocument,
    QuarantinedRecord,
    index_table,
)

# Above every version a source can carry (versions are 64-bit): nothing ever supersedes it.
FORGOTTEN_VERSION = 2**63 - 1


def _standing_alone(doc_id: str) -> str:
    """A pattern for the id as a whole value in a raw copy (not inside a longer id)."""
    return rf"(^|[^A-Za-z0-9_.-]){re.escape(doc_id)}([^A-Za-z0-9_.-]|$)"


@dataclass(frozen=True)
class Erasure:
    product: str
    doc_id: str
    versions: list[str]
    index_rows_removed: int
    chunks_removed: int
    cache_entries_removed: int
    quarantined_removed: int


def forget(
    engine: Engine,
    contract: DataProductContract,
    doc_id: str,
    *,
    actor: str,
    reason: str | None = None,
) -> Erasure:
    product = contract.name
    with engine.begin() as conn:
        lock_documents(conn, product, [doc_id])
        versions = product_versions(conn, product)
        rows = 0
        for version in versions:
            table = index_table(version.table_name, version.dimensions, version.distance)
            rows += conn.execute(delete(table).where(table.c.doc_id == doc_id)).rowcount
        conn.execute(
            delete(IndexedDocument).where(
                IndexedDocument.index_version.in_([v.id for v in versions]),
                IndexedDocument.doc_id == doc_id,
            )
        )
        hashes = list(
            conn.execute(
                select(Chunk.text_hash).where(Chunk.product == product, Chunk.doc_id == doc_id)
            ).scalars()
        )
        chunks = conn.execute(
            delete(Chunk).where(Chunk.product == product, Chunk.doc_id == doc_id)
        ).rowcount
        other = aliased(Chunk)
        cache = conn.execute(
            delete(EmbeddingCache).where(
                EmbeddingCache.text_hash.in_(hashes),
                ~exists().where(other.text_hash == EmbeddingCache.text_hash),
            )
        ).rowcount
        quarantined = conn.execute(
            delete(QuarantinedRecord).where(
                QuarantinedRecord.product == product,
                or_(
                    QuarantinedRecord.doc_id == doc_id,
                    QuarantinedRecord.raw.regexp_match(_standing_alone(doc_id)),
                ),
            )
        ).rowcount
        tombstone: dict[str, Any] = {
            "shard": contract.shard_of(doc_id),
            "version": FORGOTTEN_VERSION,
            "checksum": None,
            "title": None,
            "content": None,
            "doc_metadata": {},
            "acl_groups": [],
            "doc_groups": None,
            "document_type": contract.document_type,
            "source_updated_at": None,
            "deleted": True,
            "forgotten_at": datetime.now(UTC),
        }
        updated = conn.execute(
            update(DocumentState)
            .where(DocumentState.product == product, DocumentState.doc_id == doc_id)
            .values(tombstone)
        ).rowcount
        if not updated:  # never seen yet: forgotten before it arrives
            conn.execute(insert(DocumentState).values(product=product, doc_id=doc_id, **tombstone))
        erasure = Erasure(
            product, doc_id, [v.id for v in versions], rows, chunks, cache, quarantined
        )
        conn.execute(
            insert(ErasureAudit).values(
                product=product,
                doc_id=doc_id,
                versions=erasure.versions,
                index_rows_removed=rows,
                chunks_removed=chunks,
                cache_entries_removed=cache,
                quarantined_removed=quarantined,
                actor=actor,
                reason=reason,
            )
        )
    return erasure
