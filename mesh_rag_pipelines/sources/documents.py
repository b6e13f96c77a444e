"""The normalized document every source produces, and the mapping from a raw record to it."""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from mesh_rag_pipelines.contracts.fields import GROUP_PATTERN

if TYPE_CHECKING:
    from mesh_rag_pipelines.contracts import DataProductContract

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# PostgreSQL bigint; the version column and every comparison of versions use it.
_VERSION_RANGE = range(-(2**63), 2**63)
# A btree key (document ids are primary keys) must stay well under PostgreSQL's ~2.7 kB limit.
MAX_ID_BYTES = 512

# Every shard's run reads a whole landing file or table. A failed record whose document id is
# known is recorded by that document's shard; one without (unparseable) by this shard's runs
# only; so each is quarantined and counted once.
QUARANTINE_SHARD = 0


class RecordError(ValueError):
    """A source record that cannot become a document; it is quarantined, not dropped.

    `doc_id` is set once the record's id is known, so that the record is quarantined by its
    document's shard (and erased with it); `quality` marks a record that is well formed but
    breaks the contract's quality rules.
    """

    quality = False

    def __init__(self, field: str | None, reason: str, doc_id: str | None = None):
        self.field, self.reason, self.doc_id = field, reason, doc_id
        super().__init__(f"field '{field}': {reason}" if field else reason)


class QualityViolation(RecordError):
    """A record that breaks the contract's quality rules (required metadata, allowed types,
    minimum text length)."""

    quality = True


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
    # The groups the record itself names (schema.acl_field), None if it names none; and its type.
    acl_groups: tuple[str, ...] | None = None
    document_type: str = ""
    # Record fields the contract does not know (schema drift in a change stream).
    unexpected_fields: tuple[str, ...] = ()
    # Where the change was read: named in quarantine if the store refuses it.
    source_ref: str = ""
    record_ref: str = ""


@dataclass(frozen=True)
class KnownDocument:
    """What the store already holds for a document."""

    version: int
    checksum: str | None
    deleted: bool
    forgotten: bool = False


@dataclass(frozen=True)
class QuarantineEntry:
    source_ref: str
    record_ref: str
    field: str | None
    reason: str
    raw: str | None
    doc_id: str | None = None
    quality: bool = False


def quarantine_shard(contract: DataProductContract, entry: QuarantineEntry) -> int:
    """The shard whose runs record a quarantined record."""
    return contract.shard_of(entry.doc_id) if entry.doc_id else QUARANTINE_SHARD


def quarantine_entry(
    contract: DataProductContract,
    source_ref: str,
    record_ref: str,
    error: BaseException,
    raw: str | None,
) -> QuarantineEntry:
    """How any failed record is kept: field and reason named, the raw copy and the reason
    masked like the document would have been, everything storable.

    The references are masked too: the source (an object key or a file's path) with the object
    key masker, as the landing ledger keeps keys (so that a re-drive finds the ledger's rows),
    and the record (a line, or a row's or file's id) like an id (`masked_ref`)."""
    from mesh_rag_pipelines.governance.pii import masked_object_key, masker_for

    masker = masker_for(contract)
    if isinstance(error, RecordError):
        field, reason, doc_id, quality = error.field, error.reason, error.doc_id, error.quality
    else:
        field, doc_id, quality = None, None, False
        reason = f"unreadable record: {type(error).__name__}: {error}"
    return QuarantineEntry(
        source_ref=storable(masked_object_key(source_ref)),
        record_ref=storable(masked_ref(contract, record_ref)),
        field=field,
        reason=storable(masker.text(reason))[:2000],
        raw=storable(masker.text(raw))[:4000] if raw is not None else None,
        doc_id=doc_id if doc_id is None or not pii_in_id(contract, doc_id) else None,
        quality=quality,
    )


def pii_in_id(contract: DataProductContract, doc_id: str) -> list[str]:
    """The PII entity types the contract masks that `doc_id` holds (see governance.pii)."""
    from mesh_rag_pipelines.governance import pii

    return pii.pii_in_id(contract, doc_id)


def masked_ref(contract: DataProductContract, ref: str) -> str:
    """A record reference (a line number, or a row's or file's id) as the store keeps it: an id
    that ingestion would refuse for its PII is masked with the contract's masker."""
    from mesh_rag_pipelines.governance.pii import masker_for

    return masker_for(contract).text(ref) if pii_in_id(contract, ref) else ref


def storable_entry(contract: DataProductContract, entry: QuarantineEntry) -> QuarantineEntry:
    """`entry` with no PII left in its references, however it was made (a source may name the
    document after the entry was made): what the store records."""
    from mesh_rag_pipelines.governance.pii import masked_object_key

    doc_id = entry.doc_id if entry.doc_id is None or not pii_in_id(contract, entry.doc_id) else None
    return replace(
        entry,
        source_ref=masked_object_key(entry.source_ref),
        record_ref=masked_ref(contract, entry.record_ref),
        doc_id=doc_id,
    )


def parse_timestamp(value: Any, field_name: str) -> datetime:
    """An aware UTC datetime; one that UTC cannot represent is refused here, not on read-back."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise RecordError(field_name, f"{_shown(value)} is not an ISO-8601 timestamp") from exc
    else:
        raise RecordError(field_name, f"expected a timestamp, got {type(value).__name__}")
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError as exc:
        raise RecordError(field_name, f"{_shown(value)} is out of range in UTC") from exc


def parse_version(value: Any, field_name: str) -> int:
    """Versions compare as integers: counters as they are, timestamps as epoch microseconds."""
    if isinstance(value, bool) or value is None:
        raise RecordError(field_name, f"expected an integer or timestamp version, got {value!r}")
    if isinstance(value, int):
        version = value
    elif (isinstance(value, str) and value.strip().lstrip("-").isdigit()) or (
        isinstance(value, float) and value.is_integer()
    ):
        version = int(value)
    else:
        moment = parse_timestamp(value, field_name)
        version = (moment - _EPOCH) // _MICROSECOND
    if version not in _VERSION_RANGE:
        raise RecordError(field_name, f"{_shown(value)} is out of range for a 64-bit version")
    return version


_MICROSECOND = datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC) - _EPOCH


def document_checksum(title: str | None, content: str, metadata: Mapping[str, Any]) -> str:
    payload = json.dumps([title, content, metadata], sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def _shown(value: Any, limit: int = 60) -> str:
    """A value as an error message may quote it: short, and storable as PostgreSQL text."""
    shown = repr(value)
    return storable(shown if len(shown) <= limit else shown[:limit] + "...")


def storable(text: str) -> str:
    """`text` with what PostgreSQL text cannot hold (NUL, lone surrogates) spelled as escapes."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


def checked_text(value: str, field_name: str | None) -> str:
    """Text PostgreSQL can store: no NUL character, no lone UTF-16 surrogate."""
    if "\x00" in value:
        raise RecordError(field_name, "contains a NUL (0x00) character, which text cannot hold")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise RecordError(
            field_name, f"contains a lone surrogate ({value[exc.start]!r}), which is not text"
        ) from exc
    return value


def checked_json(value: Any, field_name: str) -> Any:
    """A metadata value PostgreSQL's jsonb can store, at any depth."""
    if isinstance(value, str):
        return checked_text(value, field_name)
    if isinstance(value, float) and not math.isfinite(value):
        raise RecordError(field_name, f"{value!r} is not a finite number")
    if isinstance(value, dict):
        return {
            checked_text(str(key), field_name): checked_json(item, field_name)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [checked_json(item, field_name) for item in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return checked_text(str(value), field_name)


def _text(record: Mapping[str, Any], name: str) -> str:
    value = record.get(name)
    if value is None:
        return ""
    if not isinstance(value, str | int | float):
        raise RecordError(name, f"expected text, got {type(value).__name__}")
    return checked_text(str(value), name)


def record_id(contract: DataProductContract, record: Mapping[str, Any]) -> str:
    name = contract.record_schema.id_field
    value = record.get(name)
    if value is None or value == "":
        raise RecordError(name, "missing document id")
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise RecordError(name, f"expected a string id, got {_shown(value)}")
    doc_id = checked_text(str(value), name)
    if len(doc_id.encode()) > MAX_ID_BYTES:
        raise RecordError(name, f"the id is longer than {MAX_ID_BYTES} bytes")
    found = pii_in_id(contract, doc_id)
    if found:
        raise RecordError(
            name,
            f"the id holds PII the contract masks ({', '.join(found)}); an id is stored, "
            "shown and joined as it is, never masked, so the record needs a surrogate key",
        )
    return doc_id


def _record_size(title: str | None, content: str, metadata: Mapping[str, Any]) -> int:
    """UTF-8 bytes of what a document keeps of its record: the measure of max_record_bytes."""
    encoded = json.dumps(metadata, separators=(",", ":"), ensure_ascii=False)
    return len(content.encode()) + len((title or "").encode()) + len(encoded.encode())


def without_fields(value: Any, fields: set[str]) -> Any:
    """`value` without the keys named `fields`, at any depth of dicts and lists."""
    if isinstance(value, dict):
        return {k: without_fields(v, fields) for k, v in value.items() if k not in fields}
    if isinstance(value, list):
        return [without_fields(v, fields) for v in value]
    return value


def _groups(record: Mapping[str, Any], name: str | None) -> tuple[str, ...] | None:
    """The groups a record names: a list of names, or one comma-separated string."""
    if name is None or record.get(name) is None:
        return None
    value = record[name]
    names = value.split(",") if isinstance(value, str) else value
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise RecordError(name, f"expected a list of group names, got {_shown(value)}")
    groups = sorted({n.strip() for n in names if n.strip()})
    for group in groups:
        if not re.fullmatch(GROUP_PATTERN, group):
            raise RecordError(name, f"{_shown(group)} is not a group name")
    return tuple(groups)


def upsert_from_record(contract: DataProductContract, record: Mapping[str, Any]) -> DocumentChange:
    """Map a source record onto a document; PII never leaves this function.

    Every value is checked here, so that nothing PostgreSQL would refuse (NUL, lone surrogates,
    non-finite numbers, out-of-range versions or timestamps) gets past the record it came in.
    PII fields are dropped at any depth, the contract's PII entity types are masked in text,
    title and metadata (keys and values, at any depth), an id holding a type the contract masks
    is refused, and the contract's quality rules are applied.
    """
    from mesh_rag_pipelines.governance.pii import masker_for

    doc_id = record_id(contract, record)
    known = {*contract.record_schema.mapped_fields, *contract.pii_fields}
    known |= set(contract.source.record_fields)
    try:
        change = _document(contract, doc_id, without_fields(dict(record), set(contract.pii_fields)))
    except RecordError as exc:
        exc.doc_id = doc_id
        raise
    masker = masker_for(contract)  # a field's name is a key like any other
    unexpected = tuple(sorted({masker.text(str(name)) for name in record if name not in known}))
    return replace(change, unexpected_fields=unexpected) if unexpected else change


def _document(
    contract: DataProductContract, doc_id: str, record: Mapping[str, Any]
) -> DocumentChange:
    from mesh_rag_pipelines.governance.pii import masker_for

    schema = contract.record_schema
    if schema.version_field not in record:
        raise RecordError(schema.version_field, "missing version")
    version = parse_version(record[schema.version_field], schema.version_field)
    updated_raw = record.get(schema.updated_at_field)
    updated_at = (
        parse_timestamp(updated_raw, schema.updated_at_field) if updated_raw is not None else None
    )
    parts = {name: _text(record, name) for name in schema.text_fields}
    title = _text(record, schema.title_field) or None if schema.title_field else None
    metadata = {
        name: checked_json(json.loads(json.dumps(record[name], default=str)), name)
        for name in schema.metadata_fields
        if name in record
    }
    size = _record_size(title, "".join(parts.values()), metadata)
    limit = contract.source.max_record_bytes
    if size > limit:
        largest = max(parts, key=lambda name: len(parts[name]))
        raise RecordError(
            largest,
            f"the record holds {size:,} bytes of text and metadata, more than the contract's "
            f"source.max_record_bytes ({limit:,})",
        )
    masker = masker_for(contract)
    content = "\n\n".join(masker.text(part) for part in parts.values() if part.strip())
    title = masker.text(title) if title else None
    metadata = masker.value(metadata)
    text_field = schema.text_fields[0] if len(parts) == 1 else "text_fields"
    if not content.strip():
        raise RecordError(
            text_field, f"no text: {', '.join(schema.text_fields)} hold nothing to index"
        )
    document_type = (
        _text(record, schema.document_type_field) if schema.document_type_field else ""
    ) or contract.document_type
    _check_quality(contract, content, metadata, document_type, text_field)
    return DocumentChange(
        doc_id=doc_id,
        version=version,
        op="upsert",
        source_updated_at=updated_at,
        title=title,
        content=content,
        metadata=metadata,
        checksum=document_checksum(title, content, metadata),
        acl_groups=_groups(record, schema.acl_field),
        document_type=document_type,
    )


def _check_quality(
    contract: DataProductContract,
    content: str,
    metadata: Mapping[str, Any],
    document_type: str,
    text_field: str,
) -> None:
    rules = contract.quality
    for name in rules.required_metadata:
        if metadata.get(name) in (None, "", [], {}):
            raise QualityViolation(name, "quality: required metadata is missing or empty")
    if rules.allowed_document_types and document_type not in rules.allowed_document_types:
        raise QualityViolation(
            contract.record_schema.document_type_field or "document_type",
            f"quality: document type {_shown(document_type)} is not one of "
            f"{rules.allowed_document_types}",
        )
    if len(content.strip()) < rules.min_text_chars:
        raise QualityViolation(
            text_field,
            f"quality: {len(content.strip())} characters of text, fewer than the "
            f"minimum of {rules.min_text_chars}",
        )
