"""A record that cannot become a document is quarantined alone: the rest of its file applies, and
later changes of its shard, deletes first, still apply.

Each case here stalled a shard, dropped good events or was silently lost before records were
decoded and validated one at a time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from mesh_rag_pipelines import settings
from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.embedding import Embedder
from mesh_rag_pipelines.pipeline import SyncDeps, sync_shard
from mesh_rag_pipelines.sources.base import SourceContext
from mesh_rag_pipelines.sources.batch import SourceRead
from mesh_rag_pipelines.sources.documents import DocumentChange, document_checksum
from mesh_rag_pipelines.store.chunk_set import apply_source_read
from mesh_rag_pipelines.store.schema import SCHEMA
from mesh_rag_pipelines_tests.helpers import shard_of
from mesh_rag_pipelines_tests.landing import (
    contract_variant,
    debezium_event,
    dms_row,
    expected_chunks,
    indexed_chunks,
    land,
    project_event,
    run_product,
    ticket,
)

SHARDS = range(settings.DEFAULT_SHARDS)
# Two tickets of the same shard: a poison record of one must not stall the other.
NEIGHBOUR, POISONED = "TCK-4001", "TCK-4004"
assert shard_of(NEIGHBOUR) == shard_of(POISONED)
GOOD = ticket(NEIGHBOUR, 1, "Stove pump leaks", "Fuel seeps from the pump of my Emberline stove.")


def _quarantine(engine: Engine, product: str) -> list[tuple[str, str | None, str]]:
    """(record ref, field, reason) of every quarantined record, in record order."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                f"SELECT record_ref, field, reason FROM {SCHEMA}.quarantine WHERE product = :p "
                "ORDER BY length(record_ref), record_ref"
            ),
            {"p": product},
        )
        return [(r.record_ref, r.field, r.reason) for r in rows]


def _line(source_format: str, record: dict[str, Any]) -> str:
    if source_format == "jsonl":
        return project_event("upsert", record)
    if source_format == "debezium":
        return debezium_event("c", None, record)
    return dms_row("I", record)


def _delete_line(source_format: str, record: dict[str, Any]) -> str:
    if source_format == "jsonl":
        return project_event("delete", {**record, "version": record["version"] + 1})
    if source_format == "debezium":
        return debezium_event("d", {**record, "version": record["version"] + 1}, None)
    return dms_row("D", {**record, "version": record["version"] + 1})


POISONS = {
    "nul_in_text": ({"body": "Cracked lid\x00 on the pot."}, "body", "NUL"),
    "version_out_of_range": ({"version": 2**64}, "version", "out of range"),
    "empty_text": ({"body": "   "}, "body", "no text"),
}


@pytest.mark.parametrize("poison", sorted(POISONS))
@pytest.mark.parametrize("source_format", ["jsonl", "debezium", "dms_csv"])
def test_a_poison_record_is_quarantined_and_a_later_delete_in_its_shard_still_applies(
    source_format: str,
    poison: str,
    products_dir: Path,
    access: SourceContext,
    engine: Engine,
    minilm: Embedder,
    s3: Any,
) -> None:
    contract = contract_variant(products_dir, f"tickets_{source_format}", source_format)
    change, field, reason = POISONS[poison]
    bad = {**ticket(POISONED, 1, "Pot lid", "The lid of my pot cracked."), **change}
    land(s3, contract, "0001", [_line(source_format, GOOD)])
    run_product(contract, access, minilm)
    land(s3, contract, "0002", [_line(source_format, bad)])
    land(s3, contract, "0003", [_delete_line(source_format, GOOD)])

    chunk_sets, _ = run_product(contract, access, minilm)
    again, _ = run_product(contract, access, minilm)

    assert indexed_chunks(engine, contract.name) == {}
    assert (chunk_sets.documents_deleted, chunk_sets.quarantined, again.quarantined) == (1, 1, 0)
    [(record_ref, got_field, got_reason)] = _quarantine(engine, contract.name)
    assert (record_ref, got_field) == ("line 1", field)
    assert reason in got_reason


def test_an_invalid_utf8_line_is_quarantined_alone_and_the_good_lines_are_indexed(
    contracts: dict[str, DataProductContract],
    access: SourceContext,
    engine: Engine,
    minilm: Embedder,
    s3: Any,
) -> None:
    tickets = contracts["support_tickets"]
    records = [
        ticket(f"TCK-50{n:02d}", 1, f"Order {n} delayed", f"My order number {n} has not arrived.")
        for n in range(3)
    ]
    lines = [project_event("upsert", record).encode() for record in records]
    latin1 = json.dumps({"op": "upsert", "data": {**GOOD, "body": "Réchaud"}}, ensure_ascii=False)
    body = b"\n".join([lines[0], latin1.encode("latin-1"), lines[1], lines[2]]) + b"\n"
    s3.put_object(
        Bucket=tickets.source.bucket, Key=f"{tickets.source.prefix}mixed.jsonl", Body=body
    )

    chunk_sets, _ = run_product(tickets, access, minilm)

    assert (chunk_sets.documents_changed, chunk_sets.quarantined) == (3, 1)
    assert indexed_chunks(engine, tickets.name) == expected_chunks(tickets, *records)
    [(record_ref, field, reason)] = _quarantine(engine, tickets.name)
    assert (record_ref, field) == ("line 2", None)
    assert reason.startswith("not valid UTF-8: byte 0xe9 at column ")


def test_a_stray_quote_in_a_dms_file_costs_only_its_own_row(
    products_dir: Path, access: SourceContext, engine: Engine, minilm: Embedder, s3: Any
) -> None:
    dms = contract_variant(products_dir, "tickets_dms", "dms_csv")
    records = [
        ticket(f"TCK-60{n:02d}", 1, f"Strap {n} frayed", f"The strap number {n} frayed.")
        for n in range(5)
    ]
    stray = dms_row("I", records[0]).replace(f",{records[0]['ticket_id']},", ',"TCK-6099,', 1)
    lines = [dms_row("I", records[0]), stray, *(dms_row("I", r) for r in records[1:])]
    land(s3, dms, "20260401-0000000000.csv", lines)

    chunk_sets, _ = run_product(dms, access, minilm)

    assert (chunk_sets.documents_changed, chunk_sets.quarantined) == (5, 1)
    assert indexed_chunks(engine, dms.name) == expected_chunks(dms, *records)
    [(record_ref, _, reason)] = _quarantine(engine, dms.name)
    assert record_ref == "line 2"
    assert "quote" in reason


def test_a_quote_inside_an_unquoted_dms_value_is_text(
    products_dir: Path, access: SourceContext, engine: Engine, minilm: Embedder, s3: Any
) -> None:
    dms = contract_variant(products_dir, "tickets_dms", "dms_csv")
    record = ticket("TCK-6101", 1, 'The 6" stake bent', "One 6 inch stake bent on rocky soil.")
    line = dms_row("I", record).replace('"The 6"" stake bent"', 'The 6" stake bent')
    land(s3, dms, "20260401-0000000000.csv", [line, dms_row("I", GOOD)])

    chunk_sets, _ = run_product(dms, access, minilm)

    assert (chunk_sets.documents_changed, chunk_sets.quarantined) == (2, 0)
    assert indexed_chunks(engine, dms.name) == expected_chunks(dms, record, GOOD)


@pytest.mark.parametrize("source_format", ["jsonl", "debezium", "dms_csv"])
def test_one_size_limit_applies_to_every_format(
    minilm: Embedder,
    source_format: str,
    products_dir: Path,
    access: SourceContext,
    engine: Engine,
    s3: Any,
) -> None:
    contract = contract_variant(products_dir, f"tickets_{source_format}", source_format)
    assert contract.source.max_record_bytes == 1_048_576
    paragraph = "The seam tape peeled off along the whole ridge after one night of rain. "
    long_but_allowed = ticket("TCK-7001", 1, "Long report", paragraph * 3_000)  # 216 kB
    too_long = ticket("TCK-7002", 1, "Very long report", paragraph * 15_000)  # 1.08 MB
    land(
        s3,
        contract,
        "0001",
        [_line(source_format, long_but_allowed), _line(source_format, too_long)],
    )

    results = [sync_shard(contract, shard, SyncDeps(access, minilm)).chunks for shard in SHARDS]

    assert sum(r.documents_changed for r in results) == 1
    [(record_ref, field, reason)] = _quarantine(engine, contract.name)
    assert (record_ref, field) == ("line 2", "body")
    metadata = {name: too_long[name] for name in contract.record_schema.metadata_fields}
    size = sum(len(too_long[name].encode()) for name in ("subject", "body")) + len(
        json.dumps(metadata, separators=(",", ":"))
    )
    assert reason == (
        f"the record holds {size:,} bytes of text and metadata, more than the contract's "
        "source.max_record_bytes (1,048,576)"
    )


@pytest.mark.parametrize(
    ("event", "field", "reason"),
    [
        (
            '{"op": "upsert", "data": {"ticket_id": "T-1", "version": 1, "updated_at": '
            '"2026-04-01T00:00:00Z", "subject": "s", "body": "b\\u0000c"}}',
            "body",
            "NUL",
        ),
        (
            '{"op": "upsert", "data": {"ticket_id": "T-1", "version": 1, "updated_at": '
            '"2026-04-01T00:00:00Z", "subject": "s\\ud800", "body": "text"}}',
            "subject",
            "lone surrogate",
        ),
        (
            '{"op": "upsert", "data": {"ticket_id": "T-1", "version": 1, "updated_at": '
            '"2026-04-01T00:00:00Z", "subject": "s", "body": "text", "priority": NaN}}',
            "priority",
            "not a finite number",
        ),
        (
            '{"op": "upsert", "data": {"ticket_id": "T-1", "version": 1, "updated_at": '
            '"2026-04-01T00:00:00Z", "subject": "s", "body": "text", "status": {"a\\u0000": 1}}}',
            "status",
            "NUL",
        ),
        (
            '{"op": "upsert", "data": {"ticket_id": "' + "T" * 600 + '", "version": 1, '
            '"subject": "s", "body": "text"}}',
            "ticket_id",
            "longer than 512 bytes",
        ),
        (
            '{"op": "upsert", "data": {"ticket_id": "T-1", "version": 1, "updated_at": '
            '"0001-01-01T00:00:00+05:00", "subject": "s", "body": "text"}}',
            "updated_at",
            "out of range",
        ),
        ("[" * 100_000, None, "invalid JSON"),
    ],
)
def test_values_postgresql_cannot_store_are_quarantined_with_their_field(
    minilm: Embedder,
    event: str,
    field: str | None,
    reason: str,
    contracts: dict[str, DataProductContract],
    access: SourceContext,
    engine: Engine,
    s3: Any,
) -> None:
    tickets = contracts["support_tickets"]
    land(s3, tickets, "0001.jsonl", [event, project_event("upsert", GOOD)])

    results = [sync_shard(tickets, shard, SyncDeps(access, minilm)).chunks for shard in SHARDS]

    assert sum(r.documents_changed for r in results) == 1
    [(record_ref, got_field, got_reason)] = _quarantine(engine, tickets.name)
    assert (record_ref, got_field) == ("line 1", field)
    assert reason in got_reason


def test_a_change_the_database_refuses_is_quarantined_and_its_batch_still_applies(
    minilm: Embedder,
    contracts: dict[str, DataProductContract],
    access: SourceContext,
    engine: Engine,
    s3: Any,
) -> None:
    """Defence in depth: a change that passed validation but fails in PostgreSQL is isolated."""
    tickets = contracts["support_tickets"]
    land(s3, tickets, "0001.jsonl", [project_event("upsert", GOOD)])
    shard = shard_of(NEIGHBOUR)
    sync_shard(tickets, shard, SyncDeps(access, minilm))

    def upsert(doc_id: str, body: str) -> DocumentChange:
        return DocumentChange(
            doc_id=doc_id,
            version=1,
            op="upsert",
            title="t",
            content=body,
            checksum=document_checksum("t", body, {}),
            source_ref="s3://bucket/0002.jsonl",
            record_ref=f"line for {doc_id}",
        )

    read = SourceRead(
        changes=[
            upsert(POISONED, "bad\x00text"),
            upsert("TCK-4009", "good text"),
            DocumentChange(NEIGHBOUR, 2, "delete"),
        ]
    )
    result = apply_source_read(engine, tickets, shard, read)

    assert (result.documents_changed, result.documents_deleted, result.quarantined) == (1, 1, 1)
    [(record_ref, field, reason)] = _quarantine(engine, tickets.name)
    assert record_ref == f"line for {POISONED}"
    assert "NUL" in reason


def test_files_with_a_nul_byte_or_no_text_are_quarantined(
    minilm: Embedder,
    contracts: dict[str, DataProductContract],
    access: SourceContext,
    engine: Engine,
) -> None:
    policies = contracts["hr_policies"]
    folder = policies.resolve_path(policies.source.path or "")
    (folder / "blank.md").write_text("\n\n")
    (folder / "binary.md").write_bytes(b"# Binary\n\nzero\x00byte\n")
    results = [sync_shard(policies, shard, SyncDeps(access, minilm)).chunks for shard in SHARDS]

    assert sum(r.documents_changed for r in results) == 12
    quarantined = {
        ref: (field, reason) for ref, field, reason in _quarantine(engine, policies.name)
    }
    assert sorted(quarantined) == ["binary.md", "blank.md"]
    assert "NUL" in quarantined["binary.md"][1]
    assert "no text" in quarantined["blank.md"][1]
