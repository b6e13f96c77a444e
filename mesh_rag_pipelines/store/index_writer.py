"""Reconcile every maintained index version of a product with document state, one shard at a
time.

For each version that is not retired (the live one, a candidate being built, the rollback
target), a run finds the live documents whose indexed version differs from their state, makes
their chunks with that version's chunker (from the stored document state if that chunker came
after them), embeds only the chunk texts neither the cache nor this run has seen for that
version's model, and then, per batch of documents in one transaction: re-checks each document's
state under its lock, deletes its old rows, COPYs the new ones and records the indexed version.
A document deleted or superseded while its vectors were being computed is skipped at that check,
so the index never receives a ghost. Because the run compares state with what is indexed, a
crashed or repeated run simply converges, and updates and deletes that land while a new version
fills reach it by construction. A version's HNSW index is built once the version is complete.

Batches are pipelined: while one batch's vectors go to the cache and the index table on a
writer thread, the next batch is embedded. At most one batch is in flight, so a failed write
stops the run before another batch starts writing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from functools import partial

import numpy as np
from sqlalchemy import Connection, Engine, Row, and_, delete, select
from sqlalchemy.dialects.postgresql import insert

from mesh_rag_pipelines.contracts import DataProductContract, EmbeddingSpec
from mesh_rag_pipelines.embedding import Embedder
from mesh_rag_pipelines.embedding.embedder import embed_checked
from mesh_rag_pipelines.store.binary_copy import (
    copy_payload,
    encode_int2,
    encode_int4,
    encode_int8,
    encode_jsonb,
    encode_text,
    encode_text_array,
    encode_timestamptz,
    encode_vector,
)
from mesh_rag_pipelines.store.chunk_set import ensure_chunks
from mesh_rag_pipelines.store.embedding_cache import cached_vectors, store_vectors
from mesh_rag_pipelines.store.index_versions import (
    build_index_if_complete,
    ensure_index_version,
    maintained_versions,
    remove_documents,
)
from mesh_rag_pipelines.store.locks import lock_documents
from mesh_rag_pipelines.store.schema import (
    Chunk,
    DocumentState,
    EmbeddingCache,
    IndexedDocument,
    IndexVersion,
    index_table,
    qualified,
)

# One embedder for every version (tests), or the embedder of a version's embedding spec.
Embedders = Embedder | Callable[[EmbeddingSpec], Embedder]

# Small enough that the last batch's write, the only one not overlapped with embedding, is
# short; large enough that each model call still sorts hundreds of texts by length.
BATCH_DOCUMENTS = 250
_COLUMNS = tuple(column.name for column in index_table("any", 1, "cosine").columns)


@dataclass
class IndexResult:
    """What a run did to one version; refresh_index returns the totals over versions, with
    each version's own result in `versions`."""

    index_version: str = ""
    table_name: str = ""
    documents_indexed: int = 0
    documents_removed: int = 0
    documents_skipped_superseded: int = 0
    chunks_written: int = 0
    chunks_removed: int = 0
    texts_embedded: int = 0
    cache_hits: int = 0
    seconds_embedding: float = 0.0
    seconds_writing: float = 0.0
    oldest_pending_change: datetime | None = None
    index_built: bool = False
    versions: list[IndexResult] = field(default_factory=list)

    def add(self, other: IndexResult) -> None:
        for item in fields(self):
            value = getattr(other, item.name)
            if isinstance(value, int | float) and not isinstance(value, bool):
                setattr(self, item.name, getattr(self, item.name) + value)
        if other.oldest_pending_change and (
            self.oldest_pending_change is None
            or other.oldest_pending_change < self.oldest_pending_change
        ):
            self.oldest_pending_change = other.oldest_pending_change


@dataclass(frozen=True)
class _PendingDocument:
    doc_id: str
    version: int
    checksum: str | None
    title: str | None
    metadata: dict
    document_type: str
    source_updated_at: datetime | None


def refresh_index(
    engine: Engine, contract: DataProductContract, shard: int, embedders: Embedders
) -> IndexResult:
    """Bring every maintained version of the product up to date for one shard, registering
    the contract's version first (a new chunker, model or index parameters make a new one)."""
    ensure_index_version(engine, contract)
    total = IndexResult()
    for version in maintained_versions(engine, contract.name):
        embedder = _embedder_of(embedders, version)
        result = _refresh_version(engine, contract.name, shard, version, embedder)
        result.index_built = build_index_if_complete(engine, version)
        total.add(result)
        total.versions.append(result)
    return total


def _embedder_of(embedders: Embedders, version: IndexVersion) -> Embedder:
    if callable(getattr(embedders, "embed", None)):
        return embedders  # type: ignore[return-value]
    return embedders(version.embedding_spec)  # type: ignore[operator]


def _refresh_version(
    engine: Engine, product: str, shard: int, version: IndexVersion, embedder: Embedder
) -> IndexResult:
    result = IndexResult(index_version=version.id, table_name=version.table_name)
    pending, stale = _pending_documents(engine, product, shard, version.id)
    if stale:
        with engine.begin() as conn:
            lock_documents(conn, product, stale)
            result.chunks_removed += remove_documents(conn, [version], stale)
            result.documents_removed += len(stale)
    if not pending:
        return result
    result.oldest_pending_change = min(
        (p.source_updated_at for p in pending if p.source_updated_at), default=None
    )
    chunks = _chunks_of(engine, product, version, pending)
    seen: dict[str, np.ndarray] = {}
    store = partial(
        _store_batch, engine, embedder.model_id, product, shard, version, chunks, result
    )
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="index-writer") as writer:
        writing: Future[None] | None = None
        for start in range(0, len(pending), BATCH_DOCUMENTS):
            batch = pending[start : start + BATCH_DOCUMENTS]
            vectors, new = _vectors_for(engine, product, embedder, batch, chunks, seen, result)
            if writing is not None:
                writing.result()
            writing = writer.submit(store, batch, vectors, new)
        if writing is not None:
            writing.result()
    return result


def _store_batch(
    engine: Engine,
    model_id: str,
    product: str,
    shard: int,
    version: IndexVersion,
    chunks: dict[str, list[Row]],
    result: IndexResult,
    batch: list[_PendingDocument],
    vectors: dict[str, np.ndarray],
    new: dict[str, np.ndarray],
) -> None:
    """Cache the batch's new vectors, then write the batch in one transaction."""
    started = time.perf_counter()
    store_vectors(engine, model_id, new)
    with engine.begin() as conn:
        _write_batch(conn, product, shard, version, batch, chunks, vectors, result)
    result.seconds_writing += time.perf_counter() - started


def _pending_documents(
    engine: Engine, product: str, shard: int, version_id: str
) -> tuple[list[_PendingDocument], list[str]]:
    state, indexed = DocumentState, IndexedDocument
    joined = and_(indexed.index_version == version_id, indexed.doc_id == state.doc_id)
    live_query = (
        select(
            state.doc_id,
            state.version,
            state.checksum,
            state.title,
            state.doc_metadata,
            state.document_type,
            state.source_updated_at,
        )
        .outerjoin(indexed, joined)
        .where(state.product == product, state.shard == shard, state.deleted.is_(False))
        .where((indexed.doc_id.is_(None)) | (indexed.doc_version != state.version))
        .order_by(state.doc_id)
    )
    stale_query = (
        select(indexed.doc_id)
        .join(state, and_(state.product == product, state.doc_id == indexed.doc_id))
        .where(indexed.index_version == version_id, state.shard == shard, state.deleted.is_(True))
    )
    with engine.connect() as conn:
        pending = [_PendingDocument(*row) for row in conn.execute(live_query)]
        stale = list(conn.execute(stale_query).scalars())
    return pending, stale


def _chunks_of(
    engine: Engine, product: str, version: IndexVersion, pending: list[_PendingDocument]
) -> dict[str, list[Row]]:
    """The version's chunks of each pending document at its pending version."""
    wanted = {p.doc_id: p.version for p in pending}
    ensure_chunks(engine, product, version.chunking_spec, wanted)
    query = (
        select(
            Chunk.doc_id,
            Chunk.chunk_no,
            Chunk.doc_version,
            Chunk.section,
            Chunk.text,
            Chunk.text_hash,
        )
        .where(
            Chunk.product == product,
            Chunk.chunker == version.chunker,
            Chunk.doc_id.in_(list(wanted)),
        )
        .order_by(Chunk.doc_id, Chunk.chunk_no)
    )
    chunks: dict[str, list[Row]] = {doc_id: [] for doc_id in wanted}
    with engine.connect() as conn:
        for chunk in conn.execute(query):
            if chunk.doc_version == wanted[chunk.doc_id]:
                chunks[chunk.doc_id].append(chunk)
    return chunks


def _vectors_for(
    engine: Engine,
    product: str,
    embedder: Embedder,
    batch: list[_PendingDocument],
    chunks: dict[str, list[Row]],
    seen: dict[str, np.ndarray],
    result: IndexResult,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(vectors of the batch's chunks, the ones embedded now). This run's earlier batches and
    the cache first; every text the model has never seen goes to it in one call per batch."""
    texts = {c.text_hash: c.text for p in batch for c in chunks[p.doc_id]}
    vectors = {h: seen[h] for h in texts if h in seen}
    vectors.update(cached_vectors(engine, embedder.model_id, [h for h in texts if h not in seen]))
    missing = [h for h in texts if h not in vectors]
    result.cache_hits += sum(len(chunks[p.doc_id]) for p in batch) - len(missing)
    new: dict[str, np.ndarray] = {}
    if missing:
        started = time.perf_counter()
        embedded = embed_checked(embedder, [texts[h] for h in missing], product)
        new = dict(zip(missing, embedded, strict=True))
        result.seconds_embedding += time.perf_counter() - started
        vectors.update(new)
        seen.update(new)
    result.texts_embedded += len(missing)
    return vectors, new


def _write_batch(
    conn: Connection,
    product: str,
    shard: int,
    version: IndexVersion,
    batch: list[_PendingDocument],
    chunks: dict[str, list[Row]],
    vectors: dict[str, np.ndarray],
    result: IndexResult,
) -> None:
    ids = [p.doc_id for p in batch]
    lock_documents(conn, product, ids)
    # Read under the lock: the version decides what is written, and the ACL is the one of now
    # (an ACL change may have landed since the batch was read).
    current = {
        row.doc_id: row
        for row in conn.execute(
            select(
                DocumentState.doc_id,
                DocumentState.version,
                DocumentState.deleted,
                DocumentState.acl_groups,
            ).where(DocumentState.product == product, DocumentState.doc_id.in_(ids))
        )
    }
    ready = [
        p
        for p in batch
        if p.doc_id in current
        and (current[p.doc_id].version, current[p.doc_id].deleted) == (p.version, False)
    ]
    result.documents_skipped_superseded += len(batch) - len(ready)
    if not ready:
        return
    result.chunks_removed += remove_documents(conn, [version], [p.doc_id for p in ready])
    now = datetime.now(UTC)
    common = (encode_text(product), encode_int2(shard))
    rows = (
        (
            encode_text(p.doc_id),
            encode_int4(c.chunk_no),
            *common,
            encode_int8(p.version),
            encode_text(p.checksum or ""),
            encode_text(version.chunker),
            encode_text(version.model_id),
            encode_text(c.section),
            encode_text(p.title),
            encode_text(c.text),
            encode_text(c.text_hash),
            encode_jsonb(p.metadata),
            encode_text_array(current[p.doc_id].acl_groups),
            encode_text(p.document_type),
            encode_timestamptz(p.source_updated_at),
            encode_timestamptz(now),
            encode_vector(vectors[c.text_hash]),
        )
        for p in ready
        for c in chunks[p.doc_id]
    )
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    cursor.copy_expert(
        f"COPY {qualified(version.table_name)} ({', '.join(_COLUMNS)}) FROM STDIN (FORMAT binary)",
        copy_payload(rows),
    )
    written = cursor.rowcount
    conn.execute(
        insert(IndexedDocument).values(
            [
                {
                    "index_version": version.id,
                    "doc_id": p.doc_id,
                    "doc_version": p.version,
                    "chunk_count": len(chunks[p.doc_id]),
                    "indexed_at": now,
                }
                for p in ready
            ]
        )
    )
    result.documents_indexed += len(ready)
    result.chunks_written += written


def reembed_documents(engine: Engine, contract: DataProductContract, doc_ids: list[str]) -> int:
    """Make the documents pending in every maintained version and drop their texts' cached
    vectors, so that the next refresh embeds them anew (after a provider fixed a model, say).
    Their rows stay served until the refresh replaces them; returns the documents affected."""
    if not doc_ids:
        return 0
    affected: set[str] = set()
    with engine.begin() as conn:
        lock_documents(conn, contract.name, doc_ids)
        for version in maintained_versions(engine, contract.name):
            texts = select(Chunk.text_hash).where(
                Chunk.product == contract.name,
                Chunk.chunker == version.chunker,
                Chunk.doc_id.in_(doc_ids),
            )
            conn.execute(
                delete(EmbeddingCache).where(
                    EmbeddingCache.model_id == version.model_id,
                    EmbeddingCache.text_hash.in_(texts),
                )
            )
            forgotten = conn.execute(
                delete(IndexedDocument)
                .where(
                    IndexedDocument.index_version == version.id,
                    IndexedDocument.doc_id.in_(doc_ids),
                )
                .returning(IndexedDocument.doc_id)
            )
            affected.update(forgotten.scalars())
    return len(affected)
