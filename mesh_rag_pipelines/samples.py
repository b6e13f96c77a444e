"""Load the seed data shipped with sample products into their sources.

The catalog seed becomes a real PostgreSQL table and the ticket seed becomes objects in a real
S3 bucket, so the sample products are read through the same code paths as production ones.
Seeding is idempotent: rows are upserted by id, objects uploaded only when missing.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Engine,
    MetaData,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import insert

from mesh_rag_pipelines.contracts import DataProductContract


def seed_sources(contracts: list[DataProductContract], engine: Engine, s3: Any) -> dict[str, str]:
    """Seed every product that ships seed data; returns what was seeded, per product."""
    seeded: dict[str, str] = {}
    for contract in contracts:
        if not contract.source.seed:
            continue
        seed = contract.resolve_path(contract.source.seed)
        if contract.source.kind == "postgres_table":
            rows = seed_table(contract, engine, seed)
            seeded[contract.name] = f"{rows} rows in table {contract.source.table}"
        elif contract.source.kind == "s3_landing":
            files, events = seed_landing_zone(contract, s3, seed)
            where = f"s3://{contract.source.bucket}/{contract.source.prefix}"
            seeded[contract.name] = f"{files} change files ({events} events) uploaded to {where}"
    return seeded


def _column_type(name: str, value: Any, timestamp_field: str) -> Any:
    if name == timestamp_field:
        return DateTime(timezone=True)
    if isinstance(value, int) and not isinstance(value, bool):
        return BigInteger
    return Text


def source_table(contract: DataProductContract, sample_row: dict[str, Any]) -> Table:
    schema_name, _, name = (contract.source.table or "").rpartition(".")
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


def seed_table(contract: DataProductContract, engine: Engine, seed: Path) -> int:
    rows = [json.loads(line) for line in seed.read_text().splitlines() if line.strip()]
    table = source_table(contract, rows[0])
    stamp = contract.record_schema.updated_at_field
    for row in rows:
        row[stamp] = datetime.fromisoformat(row[stamp].replace("Z", "+00:00"))
    with engine.begin() as conn:
        if table.schema:
            conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{table.schema}"'))
        table.create(conn, checkfirst=True)
        statement = insert(table).values(rows)
        conn.execute(
            statement.on_conflict_do_nothing(index_elements=[contract.record_schema.id_field])
        )
    return len(rows)


def seed_landing_zone(contract: DataProductContract, s3: Any, seed: Path) -> tuple[int, int]:
    """Upload the seed's change files that are not there yet: (files, events) uploaded."""
    bucket, prefix = contract.source.bucket or "", contract.source.prefix or ""
    ensure_bucket(s3, bucket)
    existing = {
        item["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for item in page.get("Contents", [])
    }
    files = events = 0
    for path in sorted(seed.iterdir()):
        key = f"{prefix}{path.name}"
        if key not in existing:
            body = path.read_bytes()
            s3.put_object(Bucket=bucket, Key=key, Body=body)
            files += 1
            events += sum(1 for line in body.splitlines() if line.strip())
    return files, events


def ensure_bucket(s3: Any, bucket: str) -> None:
    names = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    if bucket not in names:
        s3.create_bucket(Bucket=bucket)
