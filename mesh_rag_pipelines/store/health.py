"""Measurements that prove the invariant for a product's live index version."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, text

from mesh_rag_pipelines.store.index_versions import live_versions
from mesh_rag_pipelines.store.schema import SCHEMA, IndexVersion, qualified


@dataclass(frozen=True)
class IndexHealth:
    live_documents: int
    indexed_current: int
    missing_documents: int
    ghost_rows: int
    rows: int
    expected_rows: int
    oldest_unindexed_change: datetime | None
    acl_mismatches: int = 0

    @property
    def consistent(self) -> bool:
        return (
            self.missing_documents == 0
            and self.ghost_rows == 0
            and self.acl_mismatches == 0
            and self.rows == self.expected_rows
        )

    def lag_seconds(self, now: datetime | None = None) -> float:
        if self.oldest_unindexed_change is None:
            return 0.0
        return ((now or datetime.now(UTC)) - self.oldest_unindexed_change).total_seconds()


def index_health(
    engine: Engine, product: str, shard: int | None = None, version: IndexVersion | None = None
) -> IndexHealth | None:
    """Compare an index version (the live one by default) with document state and the chunk
    set of its chunker, for the whole product or for one shard (what a shard's run can
    answer for). None if the product has no live version."""
    if version is None:
        versions = live_versions(engine, [product])
        if not versions:
            return None
        version = versions[0]
    table = qualified(version.table_name)
    with engine.connect() as conn:
        row = conn.execute(
            text(f"""
            WITH live AS (
                SELECT doc_id, version, source_updated_at, acl_groups
                FROM {SCHEMA}.document_state
                WHERE product = :p AND NOT deleted
                  AND (CAST(:s AS smallint) IS NULL OR shard = :s)),
            indexed AS (
                SELECT doc_id, doc_version FROM {SCHEMA}.indexed_document
                WHERE index_version = :v),
            rows AS (
                SELECT doc_id, doc_version, acl_groups FROM {table}
                WHERE CAST(:s AS smallint) IS NULL OR shard = :s)
            SELECT
              (SELECT count(*) FROM live) AS live_documents,
              (SELECT count(*) FROM live JOIN indexed USING (doc_id)
                 WHERE indexed.doc_version = live.version) AS indexed_current,
              (SELECT min(source_updated_at) FROM live LEFT JOIN indexed USING (doc_id)
                 WHERE indexed.doc_id IS NULL OR indexed.doc_version <> live.version)
                 AS oldest_unindexed_change,
              (SELECT count(*) FROM rows t LEFT JOIN live l
                 ON l.doc_id = t.doc_id AND l.version = t.doc_version
                 WHERE l.doc_id IS NULL) AS ghost_rows,
              (SELECT count(*) FROM rows) AS rows,
              (SELECT count(*) FROM rows t JOIN live l
                 ON l.doc_id = t.doc_id AND l.version = t.doc_version
                 WHERE t.acl_groups <> l.acl_groups) AS acl_mismatches,
              (SELECT count(*) FROM {SCHEMA}.chunk c JOIN live l
                 ON l.doc_id = c.doc_id AND l.version = c.doc_version
                 WHERE c.product = :p AND c.chunker = :c) AS expected_rows
        """),
            {"p": product, "v": version.id, "c": version.chunker, "s": shard},
        ).one()
    return IndexHealth(
        live_documents=row.live_documents,
        indexed_current=row.indexed_current,
        missing_documents=row.live_documents - row.indexed_current,
        ghost_rows=row.ghost_rows,
        rows=row.rows,
        expected_rows=row.expected_rows,
        oldest_unindexed_change=row.oldest_unindexed_change,
        acl_mismatches=row.acl_mismatches,
    )


def index_rows(engine: Engine, table_name: str, shard: int | None = None) -> int:
    """Rows of an index-version table, in one shard or all."""
    table = qualified(table_name)
    where = "" if shard is None else " WHERE shard = :s"
    with engine.connect() as conn:
        return int(
            conn.execute(text(f"SELECT count(*) FROM {table}{where}"), {"s": shard}).one()[0]
        )
