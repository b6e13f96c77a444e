"""Parsers for change-event files: the project's JSON Lines, Debezium JSON and AWS DMS CSV.

A file is decoded and parsed one record at a time: each record becomes a DocumentChange or a
QuarantineEntry naming the line, the field and the reason. Nothing one record holds (bytes that
are not UTF-8, a stray quote, a value PostgreSQL cannot store) reaches another record.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from mesh_rag_pipelines.sources.documents import (
    DocumentChange,
    QuarantineEntry,
    RecordError,
    parse_timestamp,
    parse_version,
    quarantine_entry,
    record_id,
    upsert_from_record,
    without_fields,
)

if TYPE_CHECKING:
    from mesh_rag_pipelines.contracts import DataProductContract
    from mesh_rag_pipelines.sources.s3_landing import S3LandingSource

ParsedLine = DocumentChange | QuarantineEntry


def _landing(contract: DataProductContract) -> S3LandingSource:
    """The contract's landing zone: only a landing zone's files are change files."""
    return contract.source  # type: ignore[return-value]


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
    except RecursionError as exc:
        raise RecordError(None, "invalid JSON: nested too deeply") from exc
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise RecordError(None, f"invalid JSON: {exc}") from exc
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
    columns = _landing(contract).dms_columns
    row = csv_fields(line)
    if row is None:
        raise RecordError(None, "invalid CSV: a quote opens a value that is never closed")
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


def csv_fields(record: str) -> list[str] | None:
    """The fields of one RFC 4180 record, or None if its quoting is broken.

    A quote opens a quoted field only at the start of a field; anywhere else it is text, as in
    DMS output. A quoted field must close, and its closing quote must end the field: a stray
    quote makes the record malformed rather than swallowing the lines after it.
    """
    fields: list[str] = []
    current: list[str] = []
    quoted, at_start = False, True
    i = 0
    while i < len(record):
        char = record[i]
        if quoted:
            if char == '"' and record[i + 1 : i + 2] == '"':
                current.append('"')
                i += 1
            elif char == '"':
                if record[i + 1 : i + 2] not in ("", ","):
                    return None
                quoted = False
            else:
                current.append(char)
        elif char == '"' and at_start:
            quoted = True
        elif char == ",":
            fields.append("".join(current))
            current = []
            at_start = True
            i += 1
            continue
        else:
            current.append(char)
        at_start = False
        i += 1
    if quoted:
        return None
    fields.append("".join(current))
    return fields


def _inside_quotes_after(line: str, quoted: bool) -> bool:
    """Whether a quoted value is still open at the end of `line`, given its state at the start
    (a line outside quotes starts a field)."""
    at_start = True
    i = 0
    while i < len(line):
        char = line[i]
        if quoted:
            if char == '"' and line[i + 1 : i + 2] == '"':
                i += 1
            elif char == '"':
                quoted = False
        elif char == '"' and at_start:
            quoted = True
        at_start = char == "," and not quoted
        i += 1
    return quoted


def _csv_records(lines: list[str], expected_fields: int) -> Iterator[tuple[int, str]]:
    """(number of its first line, text) of each CSV record.

    A quoted value may hold line breaks (DMS quotes them per RFC 4180), so a record whose quote
    is still open at the end of its line takes the following lines until it closes. If it never
    closes, or the joined lines do not make a row of `expected_fields`, the quote was a stray:
    the line is a record of its own (and is quarantined) and reading resumes at the next line.
    """
    i = 0
    while i < len(lines):
        end = i
        quoted = _inside_quotes_after(lines[i], False)
        while quoted and end + 1 < len(lines):
            end += 1
            quoted = _inside_quotes_after(lines[end], True)
        joined = "\n".join(lines[i : end + 1])
        row = None if quoted else csv_fields(joined)
        if end == i or (row is not None and len(row) == expected_fields):
            yield i + 1, joined
            i = end + 1
        else:
            yield i + 1, lines[i]
            i += 1


def _records(contract: DataProductContract, text: str) -> Iterator[tuple[int, str]]:
    """Records end at "\n" only: str.splitlines() would also cut at characters that JSON strings
    may hold unescaped, such as U+2028."""
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    if _landing(contract).format == "dms_csv":
        yield from _csv_records(lines, len(_landing(contract).dms_columns) + 1)
    else:
        yield from enumerate(lines, start=1)


def _check_decoded(line: str) -> None:
    """Bytes that were not UTF-8 were decoded as lone surrogates (surrogateescape)."""
    for column, char in enumerate(line, start=1):
        if "\udc80" <= char <= "\udcff":
            byte = ord(char) - 0xDC00
            raise RecordError(None, f"not valid UTF-8: byte 0x{byte:02x} at column {column}")


def parse_change_file(
    contract: DataProductContract, source_ref: str, body: bytes
) -> Iterator[ParsedLine]:
    """Each record of a change file, parsed or quarantined; no record can fail the file."""
    parse = PARSERS[_landing(contract).format]
    text = body.decode("utf-8", errors="surrogateescape").removeprefix("\ufeff")
    for number, line in _records(contract, text):
        if not line.strip():
            continue
        record_ref = f"line {number}"
        try:
            _check_decoded(line)
            change = parse(contract, line)
        except RecordError as exc:
            yield quarantine_entry(contract, source_ref, record_ref, exc, redacted(contract, line))
            continue
        except Exception as exc:  # noqa: BLE001 - whatever a record does, it is quarantined
            yield quarantine_entry(contract, source_ref, record_ref, exc, None)
            continue
        yield replace(change, source_ref=source_ref, record_ref=record_ref)


def redacted(contract: DataProductContract, line: str) -> str | None:
    """The line as kept in quarantine: without the contract's PII fields (at any depth); the
    PII entity types are masked where the entry is made (quarantine_entry).

    A line that cannot be parsed cannot be redacted, so for a product with PII fields it is not
    copied at all; its file and line number still locate it in the landing zone.
    """
    pii = set(contract.pii_fields)
    if not pii:
        return line
    if _landing(contract).format == "dms_csv":
        row = csv_fields(line)
        if row is None or len(row) != len(_landing(contract).dms_columns) + 1:
            return None
        hidden = {i + 1 for i, name in enumerate(_landing(contract).dms_columns) if name in pii}
        kept = ["" if i in hidden else value for i, value in enumerate(row)]
        return ",".join(_csv_quoted(value) for value in kept)
    try:
        return json.dumps(without_fields(json.loads(line), pii))
    except (ValueError, RecursionError):
        return None


def _csv_quoted(value: str) -> str:
    if any(char in value for char in ',"\n\r'):
        return '"' + value.replace('"', '""') + '"'
    return value
