"""Right to be forgotten: one document erased from everything the store derived from it.

In one transaction, under the document's lock: its rows leave every index version's table
(retired ones too), its indexed records and chunk sets go, every cached vector that no chunk
uses any more goes, its quarantined records go (by id, or by a raw copy that names it), and its
state keeps no title, content or metadata and is marked forgotten, with a version no source
can exceed, so neither a replay of old change events nor a re-read of a polled source brings it
back. An audit row records what was removed, when, by whom and why, never the content.

The cache is keyed by (model, text hash) only, so it cannot tell which entries came from the
document's earlier versions, whose chunks are gone already. The erasure therefore removes every
entry of the models the product has ever used that no chunk of any product references: the
document's current and superseded texts, and any other orphan of those models (the cache is only
a cache: an orphan costs one embedding call if its text ever comes back).

"By whom" is two things, told apart: `actor_role`, the database role the erasing transaction
is authenticated as (PostgreSQL's `session_user`, and `current_user` if a SET ROLE changed it),
which this function reads itself and no caller can choose; and `actor_claimed`, who the caller
says is behind it (the OS user of the command line, the launcher of a Dagster run), labelled
with where the claim comes from and never verified. `actor` holds both in one line.

An id that holds PII the contract masks (see governance.pii.pii_in_id) is refused at ingestion,
so such a document exists only if it arrived before ids were checked: its state row is deleted
rather than kept as a tombstone (no source can bring the id back) and the audit row names it
masked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    delete,
    exists,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.sql.elements import ColumnElement

from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.governance.pii import masker_for, pii_in_id
from mesh_rag_pipelines.store.index_versions import product_versions, remove_documents
from mesh_rag_pipelines.store.locks import lock_documents
from mesh_rag_pipelines.store.schema import (
    Chunk,
    DocumentState,
    EmbeddingCache,
    ErasureAudit,
    IndexVersion,
    QuarantinedRecord,
)

# Above every version a source can carry (versions are 64-bit): nothing ever supersedes it.
FORGOTTEN_VERSION = 2**63 - 1


def _standing_alone(doc_id: str) -> str:
    """A pattern for the id as a whole value in a raw copy (not inside a longer id)."""
    return rf"(^|[^A-Za-z0-9_.-]){re.escape(doc_id)}([^A-Za-z0-9_.-]|$)"


@dataclass(frozen=True)
class Erasure:
    product: str
    doc_id: str  # as the audit names it: masked if the id holds PII
    versions: list[str]
    index_rows_removed: int
    chunks_removed: int
    cache_entries_removed: int
    quarantined_removed: int
    actor_role: str = ""
    actor_claimed: str = ""


def database_role(conn: Connection) -> str:
    """The role PostgreSQL authenticated this connection as, and the one it acts as if a SET
    ROLE changed it: an identity the database verified, which no caller can claim."""
    session, current = conn.execute(text("SELECT session_user, current_user")).one()
    return session if session == current else f"{session} (as {current})"


def forget(
    engine: Engine,
    contract: DataProductContract,
    doc_id: str,
    *,
    claimed_actor: str,
    reason: str | None = None,
) -> Erasure:
    """Erase `doc_id` from the product; `claimed_actor` is who the caller says asks for it,
    recorded as a claim beside the database role the erasure runs as."""
    product = contract.name
    holds_pii = bool(pii_in_id(contract, doc_id))
    named = masker_for(contract).text(doc_id) if holds_pii else doc_id
    with engine.begin() as conn:
        role = database_role(conn)
        lock_documents(conn, product, [doc_id])
        versions = product_versions(conn, product)
        rows = remove_documents(conn, versions, [doc_id])
        chunks = conn.execute(
            delete(Chunk).where(Chunk.product == product, Chunk.doc_id == doc_id)
        ).rowcount
        cache = _sweep_cache(conn, product)
        quarantined = conn.execute(
            delete(QuarantinedRecord).where(
                QuarantinedRecord.product == product, _names_document(contract, doc_id)
            )
        ).rowcount
        if holds_pii:
            conn.execute(
                delete(DocumentState).where(
                    DocumentState.product == product, DocumentState.doc_id == doc_id
                )
            )
        else:
            _keep_tombstone(conn, contract, doc_id)
        claimed = claimed_actor.strip() or "nobody claimed"
        erasure = Erasure(
            product, named, [v.id for v in versions], rows, chunks, cache, quarantined,
            role, claimed,
        )  # fmt: skip
        conn.execute(
            insert(ErasureAudit).values(
                product=product,
                doc_id=named,
                versions=erasure.versions,
                index_rows_removed=rows,
                chunks_removed=chunks,
                cache_entries_removed=cache,
                quarantined_removed=quarantined,
                actor=f"{role} (claimed: {claimed})",
                actor_role=role,
                actor_claimed=claimed,
                reason=reason,
            )
        )
    return erasure


def _sweep_cache(conn: Connection, product: str) -> int:
    """Delete the cached vectors of every model the product has used (dropped versions too)
    that no chunk references; the document's chunks are gone by now, so its texts of every
    version go unless another chunk uses them."""
    models = select(IndexVersion.model_id).where(IndexVersion.product == product).distinct()
    return conn.execute(
        delete(EmbeddingCache).where(
            EmbeddingCache.model_id.in_(models),
            ~exists().where(Chunk.text_hash == EmbeddingCache.text_hash),
        )
    ).rowcount


def _names_document(contract: DataProductContract, doc_id: str) -> ColumnElement[bool]:
    """Quarantined records of the document: by id, by a raw copy that names it, and, for a
    source whose references are ids (a table, a folder), by reference."""
    names = [
        QuarantinedRecord.doc_id == doc_id,
        QuarantinedRecord.raw.regexp_match(_standing_alone(doc_id)),
    ]
    if contract.source.refs_are_ids:
        names.append(QuarantinedRecord.record_ref == doc_id)
    return or_(*names)


def _keep_tombstone(conn: Connection, contract: DataProductContract, doc_id: str) -> None:
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
        .where(DocumentState.product == contract.name, DocumentState.doc_id == doc_id)
        .values(tombstone)
    ).rowcount
    if not updated:  # never seen yet: forgotten before it arrives
        conn.execute(
            insert(DocumentState).values(product=contract.name, doc_id=doc_id, **tombstone)
        )
