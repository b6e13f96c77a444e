"""Ingestion quality and schema drift: records breaking the contract's quality rules are
quarantined with the rule; a run with too many violations stops before the index; a source
whose shape moved is named: a renamed column by name, unexpected event fields by name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from sqlalchemy import Engine, text

from mesh_rag_pipelines.contracts import DataProductContract, load_contract
from mesh_rag_pipelines.embedding import Embedder
from mesh_rag_pipelines.pipeline import SyncDeps, sync_shard
from mesh_rag_pipelines.samples import seed_sources
from mesh_rag_pipelines.sources.base import SourceContext
from mesh_rag_pipelines.sources.postgres_table import SourceSchemaError
from mesh_rag_pipelines.store.schema import SCHEMA
from mesh_rag_pipelines_tests.helpers import source_ctx
from mesh_rag_pipelines_tests.landing import contract_variant, land, project_event, ticket

SHARDS = range(4)


@pytest.fixture
def strict_tickets(products_dir: Path) -> DataProductContract:
    contract_variant(products_dir, "tickets_strict", "jsonl")
    path = products_dir / "tickets_strict.yaml"
    path.write_text(
        path.read_text()
        .replace("title_field: subject", "title_field: subject\n  document_type_field: kind")
        .replace(
            "acl_groups: [support_agents]",
            "acl_groups: [support_agents]\nquality:\n  required_metadata: [priority]\n"
            "  allowed_document_types: [ticket, complaint]\n  min_text_chars: 20\n"
            "  max_violation_rate: 0.5",
        )
    )
    return load_contract(path)


def _reasons(engine: Engine, product: str) -> dict[str, tuple[str | None, str]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(f"SELECT doc_id, field, reason FROM {SCHEMA}.quarantine WHERE product = :p"),
            {"p": product},
        )
        return {r.doc_id: (r.field, r.reason) for r in rows}


def test_each_kind_of_quality_violation_is_quarantined_with_its_rule(
    minilm: Embedder,
    strict_tickets: DataProductContract,
    access: SourceContext,
    engine: Engine,
    s3: Any,
) -> None:
    good = ticket("TCK-5101", 1, "Zipper", "The zipper of my tent splits behind the slider.")
    no_priority = {
        **ticket("TCK-5102", 1, "Seam", "The seam leaks at the ridge in rain."),
        "priority": "",
    }
    wrong_kind = ticket(
        "TCK-5103", 1, "Ad", "Buy our new lanterns today at a discount.", kind="spam"
    )
    too_short = ticket("TCK-5104", 1, "Hi", "Help!")
    records = [good, no_priority, wrong_kind, too_short]
    land(s3, strict_tickets, "0001", [project_event("upsert", r) for r in records])

    results = [
        sync_shard(strict_tickets, shard, SyncDeps(access, minilm)).chunks for shard in SHARDS
    ]

    assert sum(r.documents_changed for r in results) == 1
    assert sum(r.quality_violations for r in results) == 3
    assert _reasons(engine, strict_tickets.name) == {
        "TCK-5102": ("priority", "quality: required metadata is missing or empty"),
        "TCK-5103": ("kind", "quality: document type 'spam' is not one of ['ticket', 'complaint']"),
        "TCK-5104": ("body", "quality: 5 characters of text, fewer than the minimum of 20"),
    }


def test_a_run_over_the_violation_limit_stops_before_the_index(
    strict_tickets: DataProductContract,
    products_dir: Path,
    database_url: str,
    s3_endpoint: str,
    monkeypatch: pytest.MonkeyPatch,
    s3: Any,
) -> None:
    from mesh_rag_pipelines.definitions import defs
    from mesh_rag_pipelines_tests.helpers import shard_of

    shard = shard_of("TCK-5201")
    bad = [ticket(f"TCK-52{n:02d}", 1, "Hi", "Help!") for n in range(1, 40)]
    bad = [r for r in bad if shard_of(r["ticket_id"]) == shard][:3]
    good = ticket("TCK-5201", 1, "Zipper", "The zipper of my tent splits behind the slider.")
    land(s3, strict_tickets, "0001", [project_event("upsert", r) for r in [good, *bad]])
    for other in ("hr_policies", "catalog_products", "support_tickets", "tickets_jsonl"):
        (products_dir / f"{other}.yaml").unlink(missing_ok=True)
    monkeypatch.setenv("MESH_RAG_DATABASE_URL", database_url)
    monkeypatch.setenv("MESH_RAG_S3_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("MESH_RAG_CONTRACTS_DIR", str(products_dir))

    job = defs().resolve_job_def("sync_tickets_strict")
    outcome = job.execute_in_process(
        partition_key=f"{shard:02d}", instance=dg.DagsterInstance.ephemeral(), raise_on_error=False
    )

    checks = {c.check_name: c for c in outcome.get_asset_check_evaluations()}
    assert not checks["quality_within_limits"].passed
    assert checks["quality_within_limits"].metadata["violation_rate"].value == 0.75
    materialized = {e.asset_key.path[-1] for e in outcome.get_asset_materialization_events()}
    assert materialized == {"chunks"}  # the embeddings waited


def test_a_renamed_column_stops_the_read_naming_it(
    minilm: Embedder,
    contracts: dict[str, DataProductContract],
    access: SourceContext,
    engine: Engine,
    s3: Any,
) -> None:
    catalog = contracts["catalog_products"]
    seed_sources([catalog], source_ctx(engine, s3))
    sync_shard(catalog, 0, SyncDeps(access, minilm))
    with engine.begin() as conn:
        conn.execute(
            text("ALTER TABLE sample_sources.catalog_products RENAME COLUMN description TO details")
        )

    with pytest.raises(SourceSchemaError) as error:
        sync_shard(catalog, 0, SyncDeps(access, minilm))
    message = str(error.value)
    assert "has no column 'description' (renamed or dropped?)" in message
    assert "'details'" in message


def test_a_retyped_column_and_unexpected_event_fields_are_reported(
    minilm: Embedder,
    contracts: dict[str, DataProductContract],
    access: SourceContext,
    engine: Engine,
    s3: Any,
) -> None:
    catalog = contracts["catalog_products"]
    seed_sources([catalog], source_ctx(engine, s3))
    sync_shard(catalog, 0, SyncDeps(access, minilm))
    with engine.begin() as conn:
        conn.execute(
            text("ALTER TABLE sample_sources.catalog_products ALTER COLUMN price_cents TYPE text")
        )
    retyped = sync_shard(catalog, 0, SyncDeps(access, minilm)).chunks
    assert retyped.schema_changes == ["column 'price_cents' changed type from BIGINT to TEXT"]

    tickets = contracts["support_tickets"]
    drifted = ticket(
        "TCK-5301", 1, "Boots", "The boots run a size small.", channel="chat", sla_tier="gold"
    )
    land(s3, tickets, "0001", [project_event("upsert", drifted)])
    from mesh_rag_pipelines_tests.helpers import shard_of

    result = sync_shard(tickets, shard_of("TCK-5301"), SyncDeps(access, minilm)).chunks
    assert result.unexpected_fields == {"channel": 1, "sla_tier": 1}
