"""What a polled source holds now, per shard, as a data version: it changes exactly when a record
of the shard is added, edited or removed, so Dagster can show a shard as unsynced and request it.

It reads identities only (ids, row versions and timestamps; file checksums), never the text.
A landing zone has no state to observe: its objects are events, reported as they land.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, column, select

from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.sources.files import file_id, source_files
from mesh_rag_pipelines.sources.postgres_table import source_table


@dataclass(frozen=True)
class ShardVersion:
    """One shard's data version, with what it summarises: records and the newest change."""

    data_version: str
    records: int
    newest_change: datetime | None


class _Digest:
    def __init__(self) -> None:
        self.entries: list[str] = []
        self.newest: datetime | None = None

    def add(self, entry: str, changed_at: datetime | None) -> None:
        self.entries.append(entry)
        if changed_at is not None and (self.newest is None or changed_at > self.newest):
            self.newest = changed_at

    def version(self) -> ShardVersion:
        digest = hashlib.sha256("\n".join(sorted(self.entries)).encode()).hexdigest()[:16]
        return ShardVersion(digest, len(self.entries), self.newest)


def observe_source(
    contract: DataProductContract, table_engine: Engine | None = None
) -> dict[int, ShardVersion]:
    """Every shard's data version (an empty shard has one too: records can be removed)."""
    digests = {shard: _Digest() for shard in range(contract.shards)}
    kind = contract.source.kind
    if kind == "files":
        _observe_files(contract, digests)
    elif kind == "postgres_table":
        if table_engine is None:
            raise ValueError(f"product {contract.name}: observing a table needs its engine")
        _observe_table(contract, table_engine, digests)
    else:
        raise ValueError(f"product {contract.name}: a {kind} source is observed as it lands")
    return {shard: digest.version() for shard, digest in digests.items()}


def _observe_files(contract: DataProductContract, digests: dict[int, _Digest]) -> None:
    root, paths = source_files(contract)
    for path in paths:
        doc_id = file_id(root, path)
        checksum = hashlib.sha256(path.read_bytes()).hexdigest()
        modified = datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)
        digests[contract.shard_of(doc_id)].add(f"{doc_id}\t{checksum}", modified)


def _observe_table(
    contract: DataProductContract, engine: Engine, digests: dict[int, _Digest]
) -> None:
    fields = contract.record_schema
    names = [fields.id_field, fields.version_field, fields.updated_at_field]
    query = select(*[column(name) for name in names]).select_from(source_table(contract))
    with engine.connect() as conn:
        for doc_id, version, updated_at in conn.execute(query):
            doc = str(doc_id)
            digests[contract.shard_of(doc)].add(
                f"{doc}\t{version}\t{updated_at}", _aware(updated_at)
            )


def _aware(value: Any) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)
