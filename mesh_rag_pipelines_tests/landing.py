"""Helpers for tests of the S3 landing source: ticket records, contract variants, runs."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import fields
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from mesh_rag_pipelines.chunking import chunk_document
from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.contracts.loader import load_contract
from mesh_rag_pipelines.embedding import Embedder
from mesh_rag_pipelines.sources.base import SourceContext
from mesh_rag_pipelines.store.chunk_set import ChunkSetResult
from mesh_rag_pipelines.store.index_writer import IndexResult
from mesh_rag_pipelines_tests.helpers import grant, index_rows, sync_all

TICKET_COLUMNS = [
    "ticket_id",
    "version",
    "updated_at",
    "subject",
    "body",
    "status",
    "priority",
    "product_area",
    "customer_email",
]


def ticket(ticket_id: str, version: int, subject: str, body: str, **extra: Any) -> dict[str, Any]:
    """A helpdesk ticket row, PII included, as the source system holds it."""
    return {
        "ticket_id": ticket_id,
        "version": version,
        "updated_at": f"2026-04-{version:02d}T09:30:00Z",
        "subject": subject,
        "body": body,
        "status": "open",
        "priority": "normal",
        "product_area": "tents",
        "customer_email": f"{ticket_id.lower()}@customers.example.com",
        **extra,
    }


def contract_variant(products_dir: Path, name: str, source_format: str) -> DataProductContract:
    """A copy of the shipped ticket contract, named `name`, reading `<name>/` in the same bucket
    in `source_format` (jsonl, debezium or dms_csv); the platform policy grants it that prefix."""
    source = f"format: {source_format}"
    if source_format == "dms_csv":
        source += f"\n  dms_columns: [{', '.join(TICKET_COLUMNS)}]"
    text = (
        (products_dir / "support_tickets.yaml")
        .read_text()
        .replace("name: support_tickets", f"name: {name}")
        .replace("prefix: support_tickets/", f"prefix: {name}/")
        .replace("format: jsonl", source)
    )
    path = products_dir / f"{name}.yaml"
    path.write_text(text)
    contract = load_contract(path)
    grant(
        products_dir,
        contract.domain,
        buckets=[{"bucket": contract.source.bucket, "prefixes": [f"{name}/"]}],
    )
    return contract


def land(s3: Any, contract: DataProductContract, file_name: str, lines: list[str]) -> str:
    """Upload a change file to the product's landing prefix; returns its key."""
    key = f"{contract.source.prefix}{file_name}"
    body = "".join(line if line.endswith("\n") else line + "\n" for line in lines)
    s3.put_object(Bucket=contract.source.bucket, Key=key, Body=body.encode())
    return key


def project_event(op: str, record: dict[str, Any]) -> str:
    """The project's own JSON Lines change event."""
    if op == "delete":
        return json.dumps({"op": "delete", "id": record["ticket_id"], "version": record["version"]})
    return json.dumps({"op": "upsert", "data": record})


def debezium_event(op: str, before: dict | None, after: dict | None, envelope: bool = False) -> str:
    """A Debezium change event; like Debezium's JSON converter, it leaves non-ASCII unescaped."""
    payload = {
        "op": op,
        "before": before,
        "after": after,
        "source": {"connector": "postgresql", "schema": "helpdesk", "table": "tickets"},
        "ts_ms": 1_777_000_000_000,
    }
    event = {"schema": {"type": "struct"}, "payload": payload} if envelope else payload
    return json.dumps(event, ensure_ascii=False)


def dms_row(op: str, record: dict[str, Any]) -> str:
    """One AWS DMS CSV record (RFC 4180 quoting, so a body may span several lines)."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(
        [op, *("" if record.get(c) is None else record[c] for c in TICKET_COLUMNS)]
    )
    return out.getvalue()


def run_product(
    contract: DataProductContract, access: SourceContext, embedder: Embedder
) -> tuple[ChunkSetResult, IndexResult]:
    """Every shard once, as a backfill does; the results summed over shards."""
    chunk_sets, indexes = ChunkSetResult(), IndexResult()
    for result in sync_all(contract, access, embedder):
        assert result.index is not None, "the quality gate held the index back"
        for total, part in ((chunk_sets, result.chunks), (indexes, result.index)):
            for field in fields(part):
                value = getattr(part, field.name)
                if isinstance(value, int | float) and not isinstance(value, bool):
                    setattr(total, field.name, getattr(total, field.name) + value)
    return chunk_sets, indexes


def indexed_chunks(engine: Engine, product: str) -> dict[tuple[str, int], tuple[int, str]]:
    """(doc id, chunk no) -> (doc version, text) in the live index version."""
    return {key: (row[0], row[1]) for key, row in index_rows(engine, product).items()}


def expected_chunks(
    contract: DataProductContract, *records: dict[str, Any]
) -> dict[tuple[str, int], tuple[int, str]]:
    """What the index must hold for these ticket versions, computed with the chunker alone."""
    return {
        (record["ticket_id"], chunk.chunk_no): (record["version"], chunk.text)
        for record in records
        for chunk in chunk_document(contract.chunking, record["subject"], record["body"])
    }
