"""A PostgreSQL table: upserts by an updated-at watermark, hard deletes by a key-set scan.

Inserts and updates are read with `updated_at >= watermark - WATERMARK_LOOKBACK`, so rows
committed late with the same or a slightly earlier timestamp are not skipped; re-reading a row
whose version is already stored costs nothing but the read. Hard deletes
leave nothing to read by timestamp, so each run also reads the id column of the whole table and
tombstones the known live ids that are gone: one index-only scan, measured in the README.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnClause, Engine, TableClause, column, inspect, select, table

from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.sources.batch import SourceRead
from mesh_rag_pipelines.sources.documents import (
    DocumentChange,
    KnownDocument,
    quarantine_entry,
    quarantine_shard,
    upsert_from_record,
    without_fields,
)

WATERMARK = "updated_at_watermark"
COLUMN_TYPES = "column_types"
# Rows committed late with an earlier updated_at (a long transaction that set now() at its
# start) are still read if they commit within this window; re-reading a row is a no-op.
WATERMARK_LOOKBACK = timedelta(minutes=10)


def source_table(contract: DataProductContract) -> TableClause:
    schema_name, _, name = (contract.source.table or "").rpartition(".")
    return table(name, schema=schema_name or None)


class SourceSchemaError(RuntimeError):
    """The source table no longer has a column the contract maps: nothing can be read right."""


def _column_types(contract: DataProductContract, engine: Engine) -> dict[str, str]:
    schema_name, _, name = (contract.source.table or "").rpartition(".")
    columns = inspect(engine).get_columns(name, schema=schema_name or None)
    return {column["name"]: str(column["type"]) for column in columns}


def check_table_schema(
    contract: DataProductContract, engine: Engine, previous: str | None
) -> tuple[dict[str, str], list[str]]:
    """The table's column types, and how they moved since the last read (`previous`, JSON).

    A mapped column that is gone (renamed or dropped) stops the read with its name; a retyped
    or a new column is reported and the read goes on.
    """
    types = _column_types(contract, engine)
    missing = [name for name in contract.record_schema.mapped_fields if name not in types]
    if missing:
        raise SourceSchemaError(
            f"product {contract.name}: source table {contract.source.table} has no column "
            f"{', '.join(repr(m) for m in missing)} (renamed or dropped?); its columns are "
            f"{sorted(types)}. Update the contract's schema, or restore the column."
        )
    before: dict[str, str] = json.loads(previous) if previous else {}
    changes = [
        f"column {name!r} changed type from {before[name]} to {kind}"
        for name, kind in types.items()
        if name in before and before[name] != kind
    ]
    changes += [
        f"new column {name!r} ({kind})"
        for name, kind in types.items()
        if before and name not in before
    ]
    changes += [f"column {name!r} was dropped" for name in before if name not in types]
    return types, changes


def read_table(
    contract: DataProductContract,
    engine: Engine,
    shard: int,
    known: Mapping[str, KnownDocument],
    cursors: Mapping[str, str],
) -> SourceRead:
    fields = contract.record_schema
    watermark = cursors.get(WATERMARK)
    types, schema_changes = check_table_schema(contract, engine, cursors.get(COLUMN_TYPES))
    source = source_table(contract)
    updated_at: ColumnClause[Any] = column(fields.updated_at_field)
    id_col: ColumnClause[Any] = column(fields.id_field)
    # Only the mapped columns are read: PII columns never leave the source database.
    wanted = fields.mapped_fields
    query = select(*[column(name) for name in wanted]).select_from(source).order_by(updated_at)
    if watermark:
        since = datetime.fromisoformat(watermark) - WATERMARK_LOOKBACK
        query = query.where(updated_at >= since)
    result = SourceRead(schema_changes=schema_changes)
    result.cursors[COLUMN_TYPES] = json.dumps(types, sort_keys=True)
    table_name = contract.source.table or ""
    newest = watermark
    with engine.connect() as conn:
        for row in conn.execute(query).mappings():
            record = dict(row)
            ref = str(record.get(fields.id_field))[:200]
            try:
                change = upsert_from_record(contract, record)
            except Exception as exc:  # noqa: BLE001 - whatever a row holds, it is quarantined
                raw = repr(without_fields(record, set(contract.pii_fields)))
                entry = quarantine_entry(contract, table_name, ref, exc, raw)
                if quarantine_shard(contract, entry) == shard:
                    result.quarantined.append(entry)
                continue
            stamp = record[fields.updated_at_field]
            stamp_text = stamp.isoformat() if hasattr(stamp, "isoformat") else str(stamp)
            newest = max(newest or "", stamp_text)
            if contract.shard_of(change.doc_id) != shard:
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


def preflight(contract: DataProductContract, engine: Engine) -> None:
    """The table answers and has every column the contract maps (raises what is wrong)."""
    check_table_schema(contract, engine, None)
