"""The normalized document every source produces, and the mapping from a raw record to it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from mesh_rag_pipelines import settings
from mesh_rag_pipelines.contracts import DataProductContract

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Every shard's run reads a whole landing file or table; records that become no document are
# recorded by this shard's runs only, so each is quarantined and counted once.
QUARANTINE_SHARD = 0


class RecordError(ValueError):
    """A source record that cannot become a document; it is quarantined, not dropped."""

    def __init__(self, field: str | None, reason: str):
        self.field, self.reason = field, reason
        super().__init__(f"field '{field}': {reason}" if field else reason)


@dataclass(frozen=True)
class DocumentChange:
    """One document's new state (upsert) or its removal (delete), at a version.

    `observed` marks a change read from the source's current state (a polled table or folder)
    rather than from a change stream: what the source holds now is the truth, so it applies
    whenever its version differs from the stored one, even after a tombstone (a row deleted and
    re-inserted with its version counter reset comes back).
    """

    doc_id: str
    version: int
    op: Literal["upsert", "delete"]
    source_updated_at: datetime | None = None
    title: str | None = None
    content: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    checksum: str = ""
    observed: bool = False


@dataclass(frozen=True)
class KnownDocument:
    """What the store already holds for a document."""

    version: int
    checksum: str | None
    deleted: bool


@dataclass(frozen=True)
class QuarantineEntry:
    source_ref: str
    record_ref: str
    field: str | None
    reason: str
    raw: str | None


def shard_of(doc_id: str, shard_count: int = settings.SHARD_COUNT) -> int:
    """Stable across processes and releases (unlike hash()): a document never changes shard."""
    return int.from_bytes(hashlib.sha1(doc_id.encode()).digest()[:4], "big") % shard_count


def parse_timestamp(value: Any, field_name: str) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise RecordError(field_name, f"{value!r} is not an ISO-8601 timestamp") from exc
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise RecordError(field_name, f"expected a timestamp, got {type(value).__name__}")


def parse_version(value: Any, field_name: str) -> int:
    """Versions compare as integers: counters as they are, timestamps as epoch microseconds."""
    if isinstance(value, bool) or value is None:
        raise RecordError(field_name, f"expected an integer or timestamp version, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    moment = parse_timestamp(value, field_name)
    return (moment - _EPOCH) // _MICROSECOND


_MICROSECOND = datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC) - _EPOCH


def document_checksum(title: str | None, content: str, metadata: Mapping[str, Any]) -> str:
    payload = json.dumps([title, content, metadata], sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def _text(record: Mapping[str, Any], name: str) -> str:
    value = record.get(name)
    if value is None:
        return ""
    if not isinstance(value, str | int | float):
        raise RecordError(name, f"expected text, got {type(value).__name__}")
    return str(value)


def record_id(contract: DataProductContract, record: Mapping[str, Any]) -> str:
    value = record.get(contract.record_schema.id_field)
    if value is None or value == "":
        raise RecordError(contract.record_schema.id_field, "missing document id")
    if not isinstance(value, str | int):
        raise RecordError(contract.record_schema.id_field, f"expected a string id, got {value!r}")
    return str(value)


def upsert_from_record(contract: DataProductContract, record: Mapping[str, Any]) -> DocumentChange:
    """Map a source record onto a document; PII fields never leave this function."""
    schema = contract.record_schema
    doc_id = record_id(contract, record)
    if schema.version_field not in record:
        raise RecordError(schema.version_field, "missing version")
    version = parse_version(record[schema.version_field], schema.version_field)
    updated_raw = record.get(schema.updated_at_field)
    updated_at = (
        parse_timestamp(updated_raw, schema.updated_at_field) if updated_raw is not None else None
    )
    parts = [_text(record, name) for name in schema.text_fields]
    content = "\n\n".join(part for part in parts if part.strip())
    title = _text(record, schema.title_field) or None if schema.title_field else None
    metadata = {name: record.get(name) for name in schema.metadata_fields if name in record}
    return DocumentChange(
        doc_id=doc_id,
        version=version,
        op="upsert",
        source_updated_at=updated_at,
        title=title,
        content=content,
        metadata=json.loads(json.dumps(metadata, default=str)),
        checksum=document_checksum(title, content, metadata),
    )
