"""Bad lines of a landing file are quarantined with the field and the reason; the rest is indexed.

One bad line never stops a file: each one lands in `mesh_rag.quarantine` (source object, line,
field, reason, raw text) and is counted in the chunk-set result of the run that read it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from mesh_rag_pipelines import settings
from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.contracts.loader import load_contract
from mesh_rag_pipelines.embedding import Embedder
from mesh_rag_pipelines.pipeline import SyncDeps, sync_shard
from mesh_rag_pipelines.samples import seed_sources
from mesh_rag_pipelines.sources.base import SourceContext
from mesh_rag_pipelines.store.index_writer import refresh_index
from mesh_rag_pipelines.store.quarantine import redrive
from mesh_rag_pipelines.store.schema import SCHEMA
from mesh_rag_pipelines_tests.helpers import source_ctx
from mesh_rag_pipelines_tests.landing import (
    contract_variant,
    debezium_event,
    dms_row,
    expected_chunks,
    indexed_chunks,
    land,
    project_event,
    ticket,
)

SHARDS = range(settings.DEFAULT_SHARDS)
GOOD = ticket("TCK-3001", 1, "Stove pump leaks", "Fuel seeps from the pump of my Emberline stove.")
ALSO_GOOD = ticket("TCK-3002", 2, "Tent pole cracked", "A pole section of my Basin 4 cracked.")
NO_ID = {**GOOD, "ticket_id": None}
TABLE = "sample_sources.catalog_products"

# (line, field named in quarantine, reason as a regular expression), per source format
BAD_LINES: dict[str, list[tuple[str, str | None, str]]] = {
    "jsonl": [
        ('{"op": "upsert", "data": {"ticket_id": "TCK-3003"', None, r"invalid JSON: .+"),
        (project_event("upsert", NO_ID), "ticket_id", r"missing document id"),
        (
            json.dumps({"op": "merge", "data": GOOD}),
            "op",
            r"unknown op 'merge'; expected 'upsert' or 'delete'",
        ),
        (
            project_event("upsert", {**GOOD, "body": {"text": "nested"}}),
            "body",
            r"expected text, got dict",
        ),
        (
            project_event("upsert", {**GOOD, "version": "next"}),
            "version",
            r"'next' is not an ISO-8601 timestamp",
        ),
    ],
    "debezium": [
        ('{"op": "c", "after": {"ticket_id": "TCK-3003"', None, r"invalid JSON: .+"),
        (debezium_event("c", None, NO_ID), "ticket_id", r"missing document id"),
        (
            debezium_event("x", None, GOOD),
            "op",
            r"unknown Debezium op 'x'; expected c, u, r or d",
        ),
        (
            debezium_event("u", GOOD, {**GOOD, "subject": ["two", "subjects"]}),
            "subject",
            r"expected text, got list",
        ),
        (debezium_event("d", None, None), "before", r"op 'd' needs a 'before' object"),
    ],
    "dms_csv": [
        ("I,TCK-3003,1", None, r"expected 10 CSV columns, got 3"),
        (dms_row("I", NO_ID), "ticket_id", r"missing document id"),
        (dms_row("X", GOOD), "Op", r"unknown DMS op 'X'; expected I, U or D"),
        (
            dms_row("U", {**GOOD, "version": "v7"}),
            "version",
            r"'v7' is not an ISO-8601 timestamp",
        ),
    ],
}


def _good_line(source_format: str, record: dict[str, Any]) -> str:
    if source_format == "jsonl":
        return project_event("upsert", record)
    if source_format == "debezium":
        return debezium_event("c", None, record)
    return dms_row("I", record)


def _quarantine(engine: Engine, product: str) -> dict[tuple[str, str], tuple[str | None, str]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                f"SELECT source_ref, record_ref, field, reason FROM {SCHEMA}.quarantine "
                "WHERE product = :p"
            ),
            {"p": product},
        )
        return {(r.source_ref, r.record_ref): (r.field, r.reason) for r in rows}


@pytest.mark.parametrize("source_format", ["jsonl", "debezium", "dms_csv"])
def test_bad_lines_are_quarantined_with_their_field_and_the_good_lines_are_indexed(
    source_format: str,
    products_dir: Path,
    access: SourceContext,
    engine: Engine,
    minilm: Embedder,
    s3: Any,
) -> None:
    contract = contract_variant(products_dir, f"tickets_{source_format}", source_format)
    bad = BAD_LINES[source_format]
    lines = [_good_line(source_format, GOOD), *(line for line, _, _ in bad)]
    lines.append(_good_line(source_format, ALSO_GOOD))
    key = land(s3, contract, "batch-0001", lines)

    results = [sync_shard(contract, shard, SyncDeps(access, minilm)).chunks for shard in SHARDS]
    for shard in SHARDS:
        refresh_index(engine, contract, shard, minilm)

    # Every shard reads the whole file; each bad line is recorded once: by its document's
    # shard when its id could be read, else by shard 00's run.
    assert sum(result.quarantined for result in results) == len(bad)
    assert sum(result.documents_changed for result in results) == 2
    quarantined = _quarantine(engine, contract.name)
    source_ref = f"s3://{contract.source.bucket}/{key}"
    assert sorted(quarantined) == [(source_ref, f"line {n}") for n in range(2, 2 + len(bad))]
    for number, (_, field, reason) in enumerate(bad, start=2):
        got_field, got_reason = quarantined[(source_ref, f"line {number}")]
        assert got_field == field, (number, got_reason)
        assert re.fullmatch(reason, got_reason), (number, got_reason)
    assert indexed_chunks(engine, contract.name) == expected_chunks(contract, GOOD, ALSO_GOOD)


def _count(engine: Engine, product: str) -> int:
    return len(_quarantine(engine, product))


def test_a_quarantined_line_is_recorded_once_and_not_read_again(
    minilm: Embedder,
    contracts: dict[str, DataProductContract],
    access: SourceContext,
    engine: Engine,
    s3: Any,
) -> None:
    tickets = contracts["support_tickets"]
    land(s3, tickets, "batch-0001.jsonl", [project_event("upsert", GOOD), "not json"])
    first = [
        sync_shard(tickets, shard, SyncDeps(access, minilm)).chunks.quarantined for shard in SHARDS
    ]
    again = [
        sync_shard(tickets, shard, SyncDeps(access, minilm)).chunks.quarantined for shard in SHARDS
    ]

    assert (first, again) == ([1, 0, 0, 0], [0, 0, 0, 0])
    assert _count(engine, tickets.name) == 1


def test_a_line_that_is_not_utf8_is_quarantined_naming_the_byte_and_its_column(
    minilm: Embedder,
    contracts: dict[str, DataProductContract],
    access: SourceContext,
    engine: Engine,
    s3: Any,
) -> None:
    tickets = contracts["support_tickets"]
    key = f"{tickets.source.prefix}batch-latin1.jsonl"
    line = json.dumps({"op": "upsert", "data": {**GOOD, "body": "Réchaud"}}, ensure_ascii=False)
    s3.put_object(Bucket=tickets.source.bucket, Key=key, Body=line.encode("latin-1"))

    result = sync_shard(tickets, 0, SyncDeps(access, minilm)).chunks

    assert (result.quarantined, result.documents_changed) == (1, 0)
    [(field, reason)] = _quarantine(engine, tickets.name).values()
    assert field is None
    assert reason == f"not valid UTF-8: byte 0xe9 at column {line.index('é') + 1}"


@pytest.mark.parametrize("source_format", ["jsonl", "dms_csv"])
def test_quarantine_keeps_no_pii(
    minilm: Embedder,
    source_format: str,
    products_dir: Path,
    access: SourceContext,
    engine: Engine,
    s3: Any,
) -> None:
    contract = contract_variant(products_dir, f"tickets_{source_format}", source_format)
    assert contract.pii_fields == ["customer_email"]
    with_email = {**NO_ID, "customer_email": "ada@example.com"}
    bad = (
        project_event("upsert", with_email)
        if source_format == "jsonl"
        else dms_row("I", with_email)
    )
    land(s3, contract, "batch-0001", [bad, '{"op": "upsert", "data": {"customer_email": "ada@'])

    sync_shard(contract, 0, SyncDeps(access, minilm))
    with engine.connect() as conn:
        raws = dict(
            conn.execute(
                text(
                    f"SELECT record_ref, raw FROM {SCHEMA}.quarantine WHERE product = :p ORDER BY 1"
                ),
                {"p": contract.name},
            ).all()
        )
    assert set(raws) == {"line 1", "line 2"}
    assert raws["line 1"] is not None and "ada@example.com" not in raws["line 1"]
    assert raws["line 2"] is None


def test_a_record_over_the_size_limit_is_indexed_after_the_limit_is_raised_and_a_redrive(
    products_dir: Path, access: SourceContext, engine: Engine, minilm: Embedder, s3: Any
) -> None:
    contract = contract_variant(products_dir, "tickets_jsonl", "jsonl")
    long_report = ticket("TCK-3101", 1, "Long report", "The seam tape peeled off again. " * 40_000)
    land(
        s3,
        contract,
        "batch-0001",
        [project_event("upsert", long_report), project_event("upsert", GOOD)],
    )
    for shard in SHARDS:
        sync_shard(contract, shard, SyncDeps(access, minilm))
    assert list(_quarantine(engine, contract.name)) == [
        (f"s3://{contract.source.bucket}/{contract.source.prefix}batch-0001", "line 1")
    ]

    path = products_dir / "tickets_jsonl.yaml"
    path.write_text(
        path.read_text().replace("format: jsonl", "format: jsonl\n  max_record_bytes: 4194304")
    )
    raised = load_contract(path)
    assert redrive(engine, raised) == 1
    results = [sync_shard(raised, shard, SyncDeps(access, minilm)).chunks for shard in SHARDS]

    assert sum(r.documents_changed for r in results) == 1
    assert sum(r.stale_changes_ignored for r in results) == 1  # GOOD again: a no-op
    assert _quarantine(engine, contract.name) == {}


def test_a_table_row_fixed_in_place_is_read_again_after_a_redrive(
    minilm: Embedder,
    contracts: dict[str, DataProductContract],
    access: SourceContext,
    engine: Engine,
    s3: Any,
) -> None:
    catalog = contracts["catalog_products"]
    seed_sources([catalog], source_ctx(engine, s3))
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE {TABLE} SET description = '' WHERE sku = 'NW-TNT-0019'"))
    for shard in SHARDS:
        sync_shard(catalog, shard, SyncDeps(access, minilm))
    assert list(_quarantine(engine, catalog.name).values()) == [
        ("description", "no text: description hold nothing to index")
    ]
    # Fixed without touching updated_at: the watermark alone would never read the row again.
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE {TABLE} SET description = 'A tent.' WHERE sku = 'NW-TNT-0019'"))

    assert redrive(engine, catalog) == 1
    results = [sync_shard(catalog, shard, SyncDeps(access, minilm)).chunks for shard in SHARDS]

    assert sum(r.documents_changed for r in results) == 1
    assert _quarantine(engine, catalog.name) == {}
