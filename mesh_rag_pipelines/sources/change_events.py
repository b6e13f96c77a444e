"""Parsers for change-event files: the project's JSON Lines, Debezium JSON and AWS DMS CSV.

Each line becomes a DocumentChange or a QuarantineEntry naming the line, the field and the
reason; one bad line never stops the others.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.sources.documents import (
    DocumentChange,
    QuarantineEntry,
    RecordError,
    parse_timestamp,
    parse_version,
    record_id,
    upsert_from_record,
)

ParsedLine = DocumentChange | QuarantineEntry


def _delete(contract: DataProductContract, record: Mapping[str, Any]) -> DocumentChange:
    schema = contract.record_schema
    if schema.version_field not in record:
        raise RecordError(schema.version_field, "missing version")
    updated = record.get(schema.updated_at_field)
    return DocumentChange(
        doc_id=record_id(contract, record),
        version=parse_version(record[schema.version_field], schema.version_field),
        op="delete",
        source_updated_at=parse_timestamp(updated, schema.updated_at_field) if updated else None,
    )


def _json_object(line: str) -> dict[str, Any]:
    try:
        value = json.loads(line)
    except json.JSONDecodeError as exc:
        raise RecordError(None, f"invalid JSON: {exc.msg} at column {exc.colno}") from exc
    if not isinstance(value, dict):
        raise RecordError(None, f"expected a JSON object, got {type(value).__name__}")
    return value


def _project_event(contract: DataProductContract, line: str) -> DocumentChange:
    """{"op": "upsert"|"delete", "id", "version", "updated_at", "data": {...}}."""
    schema = contract.record_schema
    event = _json_object(line)
    op = event.get("op")
    data = event.get("data") or {}
    if not isinstance(data, dict):
        raise RecordError("data", f"expected an object, got {type(data).__name__}")
    record = {
        **data,
        schema.id_field: event.get("id", data.get(schema.id_field)),
        schema.version_field: event.get("version", data.get(schema.version_field)),
        schema.updated_at_field: event.get("updated_at", data.get(schema.updated_at_field)),
    }
    if op == "upsert":
        return upsert_from_record(contract, record)
    if op == "delete":
        return _delete(contract, record)
    raise RecordError("op", f"unknown op {op!r}; expected 'upsert' or 'delete'")


def _debezium_event(contract: DataProductContract, line: str) -> DocumentChange:
    """Debezium JSON, with or without the schema/payload envelope: op c/u/r/d, before/after."""
    event = _json_object(line)
    payload = event.get("payload", event)
    if not isinstance(payload, dict):
        raise RecordError("payload", "expected an object")
    op = payload.get("op")
    if op in ("c", "u", "r"):
        after = payload.get("after")
        if not isinstance(after, dict):
            raise RecordError("after", f"op {op!r} needs an 'after' object")
        return upsert_from_record(contract, _with_event_time(contract, after, payload))
    if op == "d":
        before = payload.get("before")
        if not isinstance(before, dict):
            raise RecordError("before", "op 'd' needs a 'before' object")
        return _delete(contract, _with_event_time(contract, before, payload))
    raise RecordError("op", f"unknown Debezium op {op!r}; expected c, u, r or d")


def _with_event_time(
    contract: DataProductContract, record: dict[str, Any], payload: Mapping[str, Any]
) -> dict[str, Any]:
    field = contract.record_schema.updated_at_field
    if record.get(field) is None and isinstance(payload.get("ts_ms"), int):
        return {**record, field: datetime.fromtimestamp(payload["ts_ms"] / 1000, tz=UTC)}
    return record


def _dms_row(contract: DataProductContract, line: str) -> DocumentChange:
    """AWS DMS CSV: first column Op (I/U/D), then the table's columns in `source.dms_columns`."""
    columns = contract.source.dms_columns
    try:
        row = next(csv.reader(io.StringIO(line)))
    except (csv.Error, StopIteration) as exc:
        raise RecordError(None, f"invalid CSV: {exc}") from exc
    if len(row) != len(columns) + 1:
        raise RecordError(None, f"expected {len(columns) + 1} CSV columns, got {len(row)}")
    op = row[0]
    record: dict[str, str | None] = {
        name: (value or None) for name, value in zip(columns, row[1:], strict=True)
    }
    if op in ("I", "U"):
        return upsert_from_record(contract, record)
    if op == "D":
        return _delete(contract, record)
    raise RecordError("Op", f"unknown DMS op {op!r}; expected I, U or D")


PARSERS: dict[str, Callable[[DataProductContract, str], DocumentChange]] = {
    "jsonl": _project_event,
    "debezium": _debezium_event,
    "dms_csv": _dms_row,
}


def _records(body: str, quoted_line_breaks: bool) -> Iterator[tuple[int, str]]:
    """(number of its first line, text) of each record.

    Records end at "\n" only: str.splitlines() would also cut at characters that JSON strings
    may hold unescaped, such as U+2028. A CSV value in double quotes may hold line breaks (DMS
    quotes them per RFC 4180), so a CSV record ends only where its quotes balance.
    """
    start = quotes = 0
    pending: list[str] = []
    for number, line in enumerate(body.split("\n"), start=1):
        if not pending:
            start = number
        pending.append(line.removesuffix("\r"))
        quotes += line.count('"')
        if quoted_line_breaks and quotes % 2:
            continue
        yield start, "\n".join(pending)
        pending, quotes = [], 0
    if pending:
        yield start, "\n".join(pending)


def parse_change_file(
    contract: DataProductContract, source_ref: str, body: str
) -> Iterator[ParsedLine]:
    parse = PARSERS[contract.source.format]
    for number, line in _records(body, quoted_line_breaks=contract.source.format == "dms_csv"):
        if not line.strip():
            continue
        try:
            yield parse(contract, line)
        except RecordError as exc:
            raw = redacted(contract, line)
            yield QuarantineEntry(source_ref, f"line {number}", exc.field, exc.reason, raw)


def _without(value: Any, fields: set[str]) -> Any:
    if isinstance(value, dict):
        return {k: _without(v, fields) for k, v in value.items() if k not in fields}
    if isinstance(value, list):
        return [_without(v, fields) for v in value]
    return value


def redacted(contract: DataProductContract, line: str) -> str | None:
    """The line as kept in quarantine: without the contract's PII fields.

    A line that cannot be parsed cannot be redacted, so for a product with PII fields it is not
    copied at all; its file and line number still locate it in the landing zone.
    """
    pii = set(contract.pii_fields)
    if not pii:
        return line[:4000]
    if contract.source.format == "dms_csv":
        try:
            row = next(csv.reader(io.StringIO(line)))
        except (csv.Error, StopIteration):
            return None
        if len(row) != len(contract.source.dms_columns) + 1:
            return None
        hidden = {i + 1 for i, name in enumerate(contract.source.dms_columns) if name in pii}
        out = io.StringIO()
        csv.writer(out).writerow(["" if i in hidden else v for i, v in enumerate(row)])
        return out.getvalue().rstrip("\r\n")[:4000]
    try:
        return json.dumps(_without(json.loads(line), pii))[:4000]
    except json.JSONDecodeError:
        return None
