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
from collections.abc import Set as AbstractSet
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field
from sqlalchemy import (
    BigInteger,
    Column,
    ColumnClause,
    DateTime,
    Engine,
    MetaData,
    Table,
    TableClause,
    Text,
    column,
    inspect,
    select,
    table,
    text,
)
from sqlalchemy.dialects.postgresql import insert

from mesh_rag_pipelines.sources.base import (
    RedriveReset,
    Refusal,
    ShardState,
    ShardVersion,
    SourceContext,
    SourceKind,
    VersionDigest,
)
from mesh_rag_pipelines.sources.batch import SourceRead
from mesh_rag_pipelines.sources.documents import (
    DocumentChange,
    quarantine_entry,
    quarantine_shard,
    upsert_from_record,
    without_fields,
)

if TYPE_CHECKING:
    from mesh_rag_pipelines.contracts import DataProductContract
    from mesh_rag_pipelines.governance.policy import PlatformPolicy

WATERMARK = "updated_at_watermark"
COLUMN_TYPES = "column_types"
# Rows committed late with an earlier updated_at (a long transaction that set now() at its
# start) are still read if they commit within this window; re-reading a row is a no-op.
WATERMARK_LOOKBACK = timedelta(minutes=10)
# The store's own schema (store/schema.py SCHEMA) and PostgreSQL's: no contract reads them, in
# any database (a source database may be the store).
STORE_SCHEMA = "mesh_rag"
SYSTEM_SCHEMAS = frozenset({"pg_catalog", "information_schema"})


def source_table(contract: DataProductContract) -> TableClause:
    schema_name, _, name = contract.source.table.rpartition(".")  # type: ignore[union-attr]
    return table(name, schema=schema_name or None)


class SourceSchemaError(RuntimeError):
    """The source table no longer has a column the contract maps: nothing can be read right."""


def _column_types(contract: DataProductContract, engine: Engine) -> dict[str, str]:
    schema_name, _, name = contract.source.table.rpartition(".")  # type: ignore[union-attr]
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
            f"product {contract.name}: source table {contract.source.table} has no column "  # type: ignore[union-attr]
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


class PostgresTableSource(SourceKind):
    """`kind: postgres_table`: `schema.table` in the store's database, or in the database whose
    URL the variable `database_url_env` holds."""

    kind: Literal["postgres_table"] = "postgres_table"
    table: str = Field(pattern=r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)?$")
    database_url_env: str | None = None

    dagster_kind: ClassVar[str] = "postgres"
    main_field: ClassVar[str] = "source.table"

    def where(self, contract: DataProductContract) -> str:
        return f"table {self.table}"

    def read(
        self, contract: DataProductContract, shard: int, state: ShardState, ctx: SourceContext
    ) -> SourceRead:
        engine = ctx.database(self.database_url_env)
        fields = contract.record_schema
        watermark = state.cursors.get(WATERMARK)
        types, drift = check_table_schema(contract, engine, state.cursors.get(COLUMN_TYPES))
        updated_at: ColumnClause[Any] = column(fields.updated_at_field)
        # Only the mapped columns are read: PII columns never leave the source database.
        query = (
            select(*[column(name) for name in fields.mapped_fields])
            .select_from(source_table(contract))
            .order_by(updated_at)
        )
        if watermark:
            since = datetime.fromisoformat(watermark) - WATERMARK_LOOKBACK
            query = query.where(updated_at >= since)
        result = SourceRead(schema_changes=drift)
        result.cursors[COLUMN_TYPES] = json.dumps(types, sort_keys=True)
        newest = watermark
        with engine.connect() as conn:
            for row in conn.execute(query).mappings():
                stamp = self._apply_row(contract, shard, state, dict(row), result)
                if stamp:
                    newest = max(newest or "", stamp)
            id_column: ColumnClause[Any] = column(fields.id_field)
            ids = conn.execute(select(id_column).select_from(source_table(contract))).scalars()
            live_ids = {str(value) for value in ids}
        for doc_id, previous in state.known.items():
            if not previous.deleted and doc_id not in live_ids:
                result.changes.append(
                    DocumentChange(doc_id, previous.version, "delete", observed=True)
                )
        if newest:
            result.cursors[WATERMARK] = newest
        return result

    def _apply_row(
        self,
        contract: DataProductContract,
        shard: int,
        state: ShardState,
        record: dict[str, Any],
        result: SourceRead,
    ) -> str | None:
        """One row into `result`: a change, unchanged, or quarantined. Its updated_at, if it
        could be read (the watermark moves past it)."""
        fields = contract.record_schema
        ref = str(record.get(fields.id_field))[:200]
        try:
            change = upsert_from_record(contract, record)
        except Exception as exc:  # noqa: BLE001 - whatever a row holds, it is quarantined
            raw = repr(without_fields(record, set(contract.pii_fields)))
            entry = quarantine_entry(contract, self.table, ref, exc, raw)
            if quarantine_shard(contract, entry) == shard:
                result.quarantined.append(entry)
            return None
        stamp = record[fields.updated_at_field]
        if contract.shard_of(change.doc_id) == shard:
            previous = state.known.get(change.doc_id)
            if previous and previous.version == change.version and not previous.deleted:
                result.unchanged += 1
            else:
                result.changes.append(
                    replace(change, observed=True, source_ref=self.table, record_ref=ref)
                )
        return stamp.isoformat() if hasattr(stamp, "isoformat") else str(stamp)

    def observe(
        self, contract: DataProductContract, ctx: SourceContext, states: Mapping[int, ShardState]
    ) -> dict[int, ShardVersion]:
        """Ids, versions and updated_at per shard: identities, never the text."""
        fields = contract.record_schema
        names = [fields.id_field, fields.version_field, fields.updated_at_field]
        query = select(*[column(name) for name in names]).select_from(source_table(contract))
        digests = {shard: VersionDigest() for shard in range(contract.shards)}
        with ctx.database(self.database_url_env).connect() as conn:
            for doc_id, version, updated_at in conn.execute(query):
                doc = str(doc_id)
                digests[contract.shard_of(doc)].add(
                    f"{doc}\t{version}\t{updated_at}", _aware(updated_at)
                )
        return {shard: digest.version() for shard, digest in digests.items()}

    def redrive(self, refs: AbstractSet[str]) -> RedriveReset:
        """The watermarks restart: the next runs read the whole table again."""
        return RedriveReset(restart_watermarks=bool(refs))

    def seed_into(self, contract: DataProductContract, ctx: SourceContext, data: Path) -> str:
        """Create the table from a JSON Lines file (one row per line) and upsert its rows."""
        rows = [json.loads(line) for line in data.read_text().splitlines() if line.strip()]
        target = _seed_table(contract, rows[0])
        stamp = contract.record_schema.updated_at_field
        for row in rows:
            row[stamp] = datetime.fromisoformat(row[stamp].replace("Z", "+00:00"))
        with ctx.database(self.database_url_env).begin() as conn:
            if target.schema:
                conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{target.schema}"'))
            target.create(conn, checkfirst=True)
            statement = insert(target).values(rows)
            conn.execute(
                statement.on_conflict_do_nothing(index_elements=[contract.record_schema.id_field])
            )
        return f"{len(rows)} rows in table {self.table}"

    def preflight(self, contract: DataProductContract, ctx: SourceContext) -> None:
        """The table answers and has every column the contract maps."""
        check_table_schema(contract, ctx.database(self.database_url_env), None)

    def never_granted(self) -> Refusal | None:
        return reserved_table(self.table)

    def refusal(self, contract: DataProductContract, policy: PlatformPolicy) -> Refusal | None:
        grant = policy.domains.get(contract.domain)
        database = database_label(self.database_url_env)
        entries = grant.databases if grant else []
        granted = [f"{entry.database}: {pattern}" for entry in entries for pattern in entry.tables]
        patterns = [
            pattern
            for entry in entries
            if entry.database_url_env == self.database_url_env
            for pattern in entry.tables
        ]
        if not patterns:
            return (
                "source.database_url_env" if self.database_url_env else "source.table",
                f"{policy.label(contract.domain)} grants no table in {database}; it grants: "
                f"{granted}",
            )
        if not any(fnmatchcase(self.table, pattern) for pattern in patterns):
            return (
                "source.table",
                f"{self.table} is not among the tables {policy.label(contract.domain)} grants "
                f"in {database}: {granted}",
            )
        return None


def database_label(variable: str | None) -> str:
    return f"database {variable}" if variable else "the store database"


def reserved_table(name: str) -> Refusal | None:
    """Tables no contract may read, whatever the policy grants (in any database)."""
    schema, _, _ = name.rpartition(".")
    if not schema:
        return (
            "source.table",
            f"{name!r} names no schema: the platform policy grants tables by schema, so write "
            f"it as <schema>.{name} (an unqualified name may resolve to a system table)",
        )
    lowered = schema.lower()
    if lowered == STORE_SCHEMA:
        return ("source.table", f"{name} is the store's own table: no contract may read it")
    if lowered in SYSTEM_SCHEMAS or lowered.startswith("pg_"):
        return (
            "source.table",
            f"{name} is in PostgreSQL's system schema {schema}: no contract may read it",
        )
    return None


def _seed_table(contract: DataProductContract, sample_row: dict[str, Any]) -> Table:
    schema_name, _, name = contract.source.table.rpartition(".")  # type: ignore[union-attr]
    fields = contract.record_schema
    return Table(
        name,
        MetaData(schema=schema_name or None),
        *[
            Column(
                key,
                _column_type(key, value, fields.updated_at_field),
                primary_key=key == fields.id_field,
                index=key == fields.updated_at_field,
            )
            for key, value in sample_row.items()
        ],
    )


def _column_type(name: str, value: Any, timestamp_field: str) -> Any:
    if name == timestamp_field:
        return DateTime(timezone=True)
    if isinstance(value, int) and not isinstance(value, bool):
        return BigInteger
    return Text


def _aware(value: Any) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)
