"""Apply source changes to document state and the chunk set, guarded by document version.

Guarantees, per document, in one transaction: an upsert replaces the document's state and
chunks only if its version is newer than the stored one; a delete at a version not older than
the stored one leaves a tombstone and removes the document's chunks and its rows in every index
version of the product. A tombstone keeps its version, so a late older upsert cannot resurrect
the document, and replaying any change is a no-op.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, bindparam, delete, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import DBAPIError

from mesh_rag_pipelines.chunking import ChunkText, chunk_document
from mesh_rag_pipelines.contracts import ChunkingSpec, DataProductContract
from mesh_rag_pipelines.governance.access import effective_groups
from mesh_rag_pipelines.sources.batch import SourceRead
from mesh_rag_pipelines.sources.documents import (
    DocumentChange,
    KnownDocument,
    QuarantineEntry,
    RecordError,
    quarantine_entry,
    storable_entry,
)
from mesh_rag_pipelines.sources.s3_landing import AppliedObjects, ledger_key
from mesh_rag_pipelines.store.index_versions import product_versions, remove_documents
from mesh_rag_pipelines.store.locks import lock_documents
from mesh_rag_pipelines.store.quarantine import record_quarantined
from mesh_rag_pipelines.store.schema import (
    Chunk,
    DocumentState,
    LandingObject,
    SourceCursor,
    index_table,
)

BATCH_DOCUMENTS = 500


@dataclass
class ChunkSetResult:
    documents_changed: int = 0
    documents_deleted: int = 0
    documents_unchanged: int = 0
    stale_changes_ignored: int = 0
    chunks_written: int = 0
    chunks_removed: int = 0
    quarantined: int = 0
    quality_violations: int = 0
    records_read: int = 0
    acl_updated: int = 0
    unexpected_fields: dict[str, int] = field(default_factory=dict)
    schema_changes: list[str] = field(default_factory=list)


def known_documents(engine: Engine, product: str, shard: int) -> dict[str, KnownDocument]:
    query = select(
        DocumentState.doc_id,
        DocumentState.version,
        DocumentState.checksum,
        DocumentState.deleted,
        DocumentState.forgotten_at,
    ).where(DocumentState.product == product, DocumentState.shard == shard)
    with engine.connect() as conn:
        return {
            row.doc_id: KnownDocument(
                row.version, row.checksum, row.deleted, row.forgotten_at is not None
            )
            for row in conn.execute(query)
        }


def read_cursors(engine: Engine, product: str, shard: int) -> dict[str, str]:
    query = select(SourceCursor.name, SourceCursor.value).where(
        SourceCursor.product == product, SourceCursor.shard == shard
    )
    with engine.connect() as conn:
        return {row.name: row.value for row in conn.execute(query)}


def applied_objects(engine: Engine, product: str, shard: int) -> AppliedObjects:
    """(object key, etag) pairs already applied to a shard; a rewritten object is a new pair.

    Keys are kept as `ledger_key` makes them (masked if they hold PII); ask with an object's
    own key: `(key, etag) in applied_objects(...)`."""
    query = select(LandingObject.object_key, LandingObject.etag).where(
        LandingObject.product == product, LandingObject.shard == shard
    )
    with engine.connect() as conn:
        return AppliedObjects((row.object_key, row.etag) for row in conn.execute(query))


def _latest_per_document(changes: Iterable[DocumentChange]) -> dict[str, DocumentChange]:
    """Within a batch the highest version wins; at equal versions a delete wins."""
    latest: dict[str, DocumentChange] = {}
    for change in changes:
        current = latest.get(change.doc_id)
        rank = (change.version, change.op == "delete")
        if current is None or rank > (current.version, current.op == "delete"):
            latest[change.doc_id] = change
    return latest


def _applies(change: DocumentChange, stored: KnownDocument | None) -> bool:
    if stored is None:
        return True
    if stored.forgotten:  # erased for good: no replay or re-read brings it back
        return False
    if change.observed:
        if change.op == "delete":
            return not stored.deleted
        return stored.deleted or change.version != stored.version
    if change.op == "upsert":
        return change.version > stored.version
    return change.version > stored.version or (
        change.version == stored.version and not stored.deleted
    )


def apply_source_read(
    engine: Engine, contract: DataProductContract, shard: int, read: SourceRead
) -> ChunkSetResult:
    """Apply a shard's changes in batches, then record the read's progress markers.

    A change the database refuses (a value validation let through) is quarantined alone: its
    batch is retried one change per transaction, so the others, deletes included, still apply.
    Progress is recorded after the changes: a crash in between re-reads, it never skips.
    """
    result = ChunkSetResult(
        documents_unchanged=read.unchanged,
        unexpected_fields=read.unexpected_fields,
        schema_changes=list(read.schema_changes),
    )
    latest = list(_latest_per_document(read.changes).values())
    result.stale_changes_ignored = len(read.changes) - len(latest)
    quarantined = list(read.quarantined)
    for start in range(0, len(latest), BATCH_DOCUMENTS):
        batch = latest[start : start + BATCH_DOCUMENTS]
        try:
            _apply_in_transaction(engine, contract, shard, batch, result)
        except (DBAPIError, ValueError):
            for change in batch:
                try:
                    _apply_in_transaction(engine, contract, shard, [change], result)
                except (DBAPIError, ValueError) as exc:
                    if not refused_by_store(exc):
                        raise
                    quarantined.append(_refused(contract, change, exc))
    quarantined = [storable_entry(contract, entry) for entry in quarantined]
    with engine.begin() as conn:
        _record_progress(conn, contract.name, shard, read, quarantined)
    result.quarantined = len(quarantined)
    result.quality_violations = sum(q.quality for q in quarantined)
    result.records_read = len(read.changes) + len(quarantined) + read.unchanged
    return result


def _apply_in_transaction(
    engine: Engine,
    contract: DataProductContract,
    shard: int,
    batch: list[DocumentChange],
    result: ChunkSetResult,
) -> None:
    """Counts reach `result` only if the transaction commits."""
    counts = ChunkSetResult()
    with engine.begin() as conn:
        _apply_batch(conn, contract, shard, batch, counts)
    for name, value in asdict(counts).items():
        if isinstance(value, int):
            setattr(result, name, getattr(result, name) + value)


# SQLSTATE classes of errors caused by the data of a statement, not by the server or the network.
_DATA_ERROR_CLASSES = ("22", "54")


def refused_by_store(exc: BaseException) -> bool:
    """Whether PostgreSQL (or the driver, before sending) refused a value: retrying cannot help,
    unlike a lost connection or a server restart."""
    if isinstance(exc, ValueError):
        return True
    code = getattr(getattr(exc, "orig", None), "pgcode", None) or ""
    return code[:2] in _DATA_ERROR_CLASSES


def _refused(
    contract: DataProductContract, change: DocumentChange, exc: BaseException
) -> QuarantineEntry:
    message = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
    refused = RecordError(None, f"refused by the store: {message}", change.doc_id)
    return quarantine_entry(
        contract, change.source_ref, change.record_ref or change.doc_id, refused, None
    )


def _apply_batch(
    conn: Connection,
    contract: DataProductContract,
    shard: int,
    batch: list[DocumentChange],
    result: ChunkSetResult,
) -> None:
    if not batch:
        return
    product = contract.name
    ids = [change.doc_id for change in batch]
    lock_documents(conn, product, ids)
    stored = {
        row.doc_id: KnownDocument(
            row.version, row.checksum, row.deleted, row.forgotten_at is not None
        )
        for row in conn.execute(
            select(
                DocumentState.doc_id,
                DocumentState.version,
                DocumentState.checksum,
                DocumentState.deleted,
                DocumentState.forgotten_at,
            ).where(DocumentState.product == product, DocumentState.doc_id.in_(ids))
        )
    }
    upserts, deletes = [], []
    for change in batch:
        if not _applies(change, stored.get(change.doc_id)):
            result.stale_changes_ignored += 1
        elif change.op == "upsert":
            upserts.append(change)
        else:
            deletes.append(change)
    _write_upserts(conn, contract, upserts, result)
    _write_deletes(conn, contract, deletes, stored, result)


def _state_row(contract: DataProductContract, change: DocumentChange, deleted: bool) -> dict:
    return {
        "product": contract.name,
        "doc_id": change.doc_id,
        "shard": contract.shard_of(change.doc_id),
        "version": change.version,
        "checksum": change.checksum or None,
        "title": change.title,
        "content": None if deleted else change.content,
        "doc_metadata": {} if deleted else change.metadata,
        "acl_groups": effective_groups(contract.acl_groups, change.acl_groups),
        "doc_groups": list(change.acl_groups) if change.acl_groups is not None else None,
        "document_type": change.document_type or contract.document_type,
        "source_updated_at": change.source_updated_at,
        "observed_at": datetime.now(UTC),
        "deleted": deleted,
        "forgotten_at": None,
    }


def _upsert_states(conn: Connection, rows: list[dict]) -> None:
    if not rows:
        return
    statement = insert(DocumentState).values(rows)
    columns = {
        c.name: statement.excluded[c.name]
        for c in DocumentState.__table__.columns
        if c.name not in ("product", "doc_id")
    }
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=[DocumentState.product, DocumentState.doc_id], set_=columns
        )
    )


def _write_upserts(
    conn: Connection,
    contract: DataProductContract,
    upserts: list[DocumentChange],
    result: ChunkSetResult,
) -> None:
    if not upserts:
        return
    ids = [change.doc_id for change in upserts]
    _upsert_states(conn, [_state_row(contract, change, deleted=False) for change in upserts])
    # Every chunker's chunks of the old version go; other versions' chunkers make theirs when
    # their index needs them (ensure_chunks).
    removed = conn.execute(
        delete(Chunk).where(Chunk.product == contract.name, Chunk.doc_id.in_(ids))
    )
    rows = [
        _chunk_row(contract.name, contract.chunking, change.doc_id, change.version, chunk)
        for change in upserts
        for chunk in chunk_document(contract.chunking, change.title, change.content)
    ]
    if rows:
        conn.execute(insert(Chunk), rows)
    result.documents_changed += len(upserts)
    result.chunks_written += len(rows)
    result.chunks_removed += removed.rowcount


ACL_CURSOR = "acl_groups"


def sync_acl(engine: Engine, contract: DataProductContract, shard: int) -> int:
    """Carry a change of the contract's ACL groups to the shard's documents and every index
    version's rows, without re-embedding anything; returns how many documents changed.

    Upserts write the ACL of their time; only a contract edit makes stored ACLs stale, so this
    does nothing unless the groups differ from the ones last applied to the shard.
    """
    applied = json.dumps(sorted(set(contract.acl_groups)))
    if read_cursors(engine, contract.name, shard).get(ACL_CURSOR) == applied:
        return 0
    query = select(DocumentState.doc_id, DocumentState.acl_groups, DocumentState.doc_groups).where(
        DocumentState.product == contract.name,
        DocumentState.shard == shard,
        DocumentState.deleted.is_(False),
    )
    with engine.connect() as conn:
        stale = {
            row.doc_id: groups
            for row in conn.execute(query)
            if sorted(row.acl_groups)
            != (groups := effective_groups(contract.acl_groups, row.doc_groups))
        }
    ids = sorted(stale)
    for start in range(0, len(ids), BATCH_DOCUMENTS):
        batch = ids[start : start + BATCH_DOCUMENTS]
        with engine.begin() as conn:
            lock_documents(conn, contract.name, batch)
            conn.execute(
                update(DocumentState)
                .where(
                    DocumentState.product == contract.name,
                    DocumentState.doc_id == bindparam("b_doc"),
                )
                .values(acl_groups=bindparam("b_groups")),
                [{"b_doc": doc_id, "b_groups": stale[doc_id]} for doc_id in batch],
            )
            for version in product_versions(conn, contract.name):
                table = index_table(version.table_name, version.dimensions, version.distance)
                conn.execute(
                    update(table)
                    .where(
                        DocumentState.product == contract.name,
                        DocumentState.doc_id.in_(batch),
                        table.c.doc_id == DocumentState.doc_id,
                    )
                    .values(acl_groups=DocumentState.acl_groups)
                )
    with engine.begin() as conn:
        _record_cursors(conn, contract.name, shard, {ACL_CURSOR: applied})
    return len(ids)


def _chunk_row(
    product: str, chunking: ChunkingSpec, doc_id: str, doc_version: int, chunk: ChunkText
) -> dict:
    return {
        "product": product,
        "chunker": chunking.identity,
        "doc_id": doc_id,
        "chunk_no": chunk.chunk_no,
        "doc_version": doc_version,
        "section": chunk.section,
        "text": chunk.text,
        "text_hash": chunk.text_hash,
    }


def ensure_chunks(
    engine: Engine, product: str, chunking: ChunkingSpec, wanted: dict[str, int]
) -> int:
    """Make `chunking`'s chunks of documents (doc id -> version) that lack them, from the
    document content already in the store, not from the source: how a new chunker reaches
    every live document. Returns how many documents were chunked."""
    have = select(Chunk.doc_id, Chunk.doc_version).where(
        Chunk.product == product,
        Chunk.chunker == chunking.identity,
        Chunk.doc_id.in_(list(wanted)),
        Chunk.chunk_no == 0,
    )
    with engine.connect() as conn:
        present = {(row.doc_id, row.doc_version) for row in conn.execute(have)}
    missing = sorted(doc_id for doc_id, v in wanted.items() if (doc_id, v) not in present)
    chunked = 0
    for start in range(0, len(missing), BATCH_DOCUMENTS):
        batch = missing[start : start + BATCH_DOCUMENTS]
        with engine.begin() as conn:
            lock_documents(conn, product, batch)
            states = conn.execute(
                select(
                    DocumentState.doc_id,
                    DocumentState.version,
                    DocumentState.title,
                    DocumentState.content,
                ).where(
                    DocumentState.product == product,
                    DocumentState.doc_id.in_(batch),
                    DocumentState.deleted.is_(False),
                )
            ).all()
            current = [s for s in states if s.version == wanted[s.doc_id]]
            conn.execute(
                delete(Chunk).where(
                    Chunk.product == product,
                    Chunk.chunker == chunking.identity,
                    Chunk.doc_id.in_([s.doc_id for s in current]),
                )
            )
            rows = [
                _chunk_row(product, chunking, s.doc_id, s.version, chunk)
                for s in current
                for chunk in chunk_document(chunking, s.title, s.content or "")
            ]
            if rows:
                conn.execute(insert(Chunk), rows)
            chunked += len(current)
    return chunked


def _write_deletes(
    conn: Connection,
    contract: DataProductContract,
    deletes: list[DocumentChange],
    stored: dict[str, KnownDocument],
    result: ChunkSetResult,
) -> None:
    if not deletes:
        return
    ids = [change.doc_id for change in deletes]
    tombstones = [_state_row(contract, change, deleted=True) for change in deletes]
    _upsert_states(conn, tombstones)
    removed = conn.execute(
        delete(Chunk).where(Chunk.product == contract.name, Chunk.doc_id.in_(ids))
    )
    remove_documents(conn, product_versions(conn, contract.name), ids)
    was_live = [c for c in deletes if c.doc_id in stored and not stored[c.doc_id].deleted]
    result.documents_deleted += len(was_live)
    result.chunks_removed += removed.rowcount


def _record_cursors(conn: Connection, product: str, shard: int, cursors: dict[str, str]) -> None:
    for name, value in cursors.items():
        conn.execute(
            insert(SourceCursor)
            .values(product=product, shard=shard, name=name, value=value)
            .on_conflict_do_update(
                index_elements=["product", "shard", "name"], set_={"value": value}
            )
        )


def _record_progress(
    conn: Connection,
    product: str,
    shard: int,
    read: SourceRead,
    quarantined: list[QuarantineEntry],
) -> None:
    _record_cursors(conn, product, shard, read.cursors)
    if read.landed_objects:
        conn.execute(
            insert(LandingObject)
            .values(
                [
                    {
                        "product": product,
                        "shard": owner,
                        "object_key": ledger_key(key),
                        "etag": etag,
                    }
                    for owner, key, etag in read.landed_objects
                ]
            )
            .on_conflict_do_nothing()
        )
    record_quarantined(conn, product, quarantined)
