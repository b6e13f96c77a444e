"""Asset checks of a shard's run, evaluated in the step that materializes the shard, so that every
materialization carries its verdict whoever requested it (a job, a backfill, an automation
condition): the shard's quality, schema drift and quarantine on the chunks, the invariant on
the embeddings. The product-wide verdict (the whole index, golden queries) belongs to the
release asset, once every shard is in."""

from __future__ import annotations

from typing import Any

import dagster as dg
from sqlalchemy import Engine

from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.sources.documents import QUARANTINE_SHARD
from mesh_rag_pipelines.store.chunk_set import ChunkSetResult
from mesh_rag_pipelines.store.health import IndexHealth, index_health
from mesh_rag_pipelines.store.quarantine import quarantined_records

QUARANTINE_SHOWN = 20


def chunks_check_specs(contract: DataProductContract, key: dg.AssetKey) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(
            "quality_within_limits",
            asset=key,
            blocking=True,
            description=(
                "The share of records breaking the contract's quality rules is at most "
                f"{contract.quality.max_violation_rate:.0%}; above it the index waits."
            ),
        ),
        dg.AssetCheckSpec(
            "source_schema_stable",
            asset=key,
            description="The source's fields and columns are the ones the contract maps.",
        ),
        dg.AssetCheckSpec(
            "no_quarantined_records",
            asset=key,
            description=(
                "Every source record of the shard became a document; quarantined ones are "
                "listed with the reason (re-drive them with `mesh-rag quarantine redrive` once "
                "fixed). A warning: the rest of the shard is served."
            ),
        ),
    ]


def chunks_check_results(
    contract: DataProductContract,
    shard: int,
    result: ChunkSetResult,
    drift: list[str],
    engine: Engine,
    key: dg.AssetKey,
) -> list[dg.AssetCheckResult]:
    rate = result.quality_violations / result.records_read if result.records_read else 0.0
    return [
        dg.AssetCheckResult(
            asset_key=key,
            check_name="quality_within_limits",
            passed=rate <= contract.quality.max_violation_rate,
            metadata={
                "violations": result.quality_violations,
                "records_read": result.records_read,
                "violation_rate": round(rate, 4),
                "max_violation_rate": contract.quality.max_violation_rate,
            },
        ),
        dg.AssetCheckResult(
            asset_key=key,
            check_name="source_schema_stable",
            passed=not drift,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"drift": "; ".join(drift) or "none"},
        ),
        quarantine_result(contract, shard, engine, key),
    ]


def quarantine_result(
    contract: DataProductContract, shard: int, engine: Engine, key: dg.AssetKey
) -> dg.AssetCheckResult:
    """The shard's quarantined records, each with file or table, line or id, field and reason."""
    records = [
        r
        for r in quarantined_records(engine, [contract.name])
        if (contract.shard_of(r.doc_id) if r.doc_id else QUARANTINE_SHARD) == shard
    ]
    rows = [
        f"| {r.source_ref} | {r.record_ref} | {r.field or ''} | {r.reason} |"
        for r in records[:QUARANTINE_SHOWN]
    ]
    table = "\n".join(["| source | record | field | reason |", "|---|---|---|---|", *rows])
    return dg.AssetCheckResult(
        asset_key=key,
        check_name="no_quarantined_records",
        passed=not records,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"quarantined": len(records), "records": dg.MetadataValue.md(table)},
    )


def embeddings_check_specs(key: dg.AssetKey) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(
            "index_matches_source",
            asset=key,
            blocking=True,
            description=(
                "The invariant, in the shard the run materialized: every live document indexed "
                "at its current version with its current ACL, no ghost rows, one row per chunk."
            ),
        )
    ]


def embeddings_check_results(
    contract: DataProductContract, shard: int, engine: Engine, key: dg.AssetKey
) -> list[dg.AssetCheckResult]:
    health = index_health(engine, contract.name, shard=shard)
    return [health_verdict(health, f"{shard:02d}", check_name="index_matches_source", key=key)]


def health_verdict(
    health: IndexHealth | None,
    scope: str,
    check_name: str | None = None,
    key: dg.AssetKey | None = None,
) -> dg.AssetCheckResult:
    """The invariant over `scope` (a shard, or "all"), as IndexHealth defines it."""
    named: dict[str, Any] = {"check_name": check_name} if check_name else {}
    if key is not None:
        named["asset_key"] = key
    if health is None:
        return dg.AssetCheckResult(
            passed=False, metadata={"reason": "no live index version"}, **named
        )
    return dg.AssetCheckResult(
        passed=health.consistent,
        metadata={
            "shard": scope,
            "live_documents": health.live_documents,
            "ghost_rows": health.ghost_rows,
            "rows": health.rows,
            "expected_rows": health.expected_rows,
            "documents_awaiting_index": health.missing_documents,
            "acl_mismatches": health.acl_mismatches,
        },
        **named,
    )
