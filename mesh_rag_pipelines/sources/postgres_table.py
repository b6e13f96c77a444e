"""A PostgreSQL table: upserts by an updated-at watermark, hard deletes by a key-set scan.

Inserts and updates are read with `updated_at >= watermark - WATERMARK_LOOKBACK`, so rows
committed late with the same or a slightly earlier timestamp are not skipped; re-reading a row
whose version is already stored costs nothing but the read. Hard deletes
leave nothing to read by timestamp, so each run also reads the id column of the whole table and
tombstones the known live ids that are gone: one index-only scan, measured in the README.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnClause, Engine, TableClause, column, select, table

from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.sources.batch import SourceRead
from mesh_rag_pipelines.sources.documents import (
    QUARANTINE_SHARD,
    DocumentChange,
    KnownDocument,
    QuarantineEntry,
    RecordError,
    shard_of,
    storable,
    upsert_from_record,
)

WATERMARK = "updated_at_watermark"
# Rows committed late with an earlier updated_at (a long transaction that set now() at its
# start) are still read if they commit within this window; re-reading a row is a no-op.
WATERMARK_LOOKBACK = timedelta(minutes=10)


def _source_table(contract: DataProductContract) -> TableClause:
    schema_name, _, name = (contract.source.table or "").rpartition(".")
    return table(name, schema=schema_name or None)


def read_table(
    contract: DataProductContract,
    engine: Engine,
    shard: int,
    known: Mapping[str, KnownDocument],
    watermark: str | None,
) -> SourceRead:
    fields = contract.record_schema
    source = _source_table(contract)
    updated_at: ColumnClause[Any] = column(fields.updated_at_field)
    id_col: ColumnClause[Any] = column(fields.id_field)
    # Only the mapped columns are read: PII columns never leave the source database.
    wanted = dict.fromkeys(
        [
            fields.id_field,
            fields.version_field,
            fields.updated_at_field,
            *([fields.title_field] if fields.title_field else []),
            *fields.text_fields,
            *fields.metadata_fields,
        ]
    )
    query = select(*[column(name) for name in wanted]).select_from(source).order_by(updated_at)
    if watermark:
        since = datetime.fromisoformat(watermark) - WATERMARK_LOOKBACK
        query = query.where(updated_at >= since)
    result = SourceRead()
    table_name = contract.source.table or ""
    newest = watermark
    with engine.connect() as conn:
        for row in conn.execute(query).mappings():
            record = dict(row)
            ref = storable(str(record.get(fields.id_field)))[:200]
            try:
                change = upsert_from_record(contract, record)
            except Exception as exc:  # noqa: BLE001 - whatever a row holds, it is quarantined
                if shard != QUARANTINE_SHARD:
                    continue
                field, reason = (
                    (exc.field, exc.reason)
                    if isinstance(exc, RecordError)
                    else (None, f"unreadable row: {type(exc).__name__}: {exc}")
                )
                raw = storable(repr(record)[:2000])
                result.quarantined.append(
                    QuarantineEntry(table_name, ref, field, storable(reason), raw)
                )
                continue
            stamp = record[fields.updated_at_field]
            stamp_text = stamp.isoformat() if hasattr(stamp, "isoformat") else str(stamp)
            newest = max(newest or "", stamp_text)
            if shard_of(change.doc_id) != shard:
                continue
            previous = known.get(change.doc_id)
            if previous and previous.version == change.version and not previous.deleted:
                result.unchanged += 1
                continue
            result.changes.append(
                replace(change, observed=True, source_ref=table_name, record_ref=ref)
            )
        ids = conn.execute(select(id_col).select_from(source)).scalars()
        live_ids = {str(value) for value in ids}
    for doc_id, previous in known.items():
        if not previous.deleted and doc_id not in live_ids:
            result.changes.append(DocumentChange(doc_id, previous.version, "delete", observed=True))
    if newest:
        result.cursors[WATERMARK] = newest
    return result
