"""Asset checks of a shard's run: the invariant and the quarantine, judged for the shard the
run materialized (other shards may be mid-run). The product-wide verdict (the whole index,
golden queries) belongs to the release asset, once every shard is in."""

import dagster as dg

from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.defs.assets import chunks_key, embeddings_key
from mesh_rag_pipelines.defs.partitions import shard_number
from mesh_rag_pipelines.defs.resources import IndexStore
from mesh_rag_pipelines.sources.documents import QUARANTINE_SHARD
from mesh_rag_pipelines.store.health import IndexHealth, index_health
from mesh_rag_pipelines.store.quarantine import quarantined_records

QUARANTINE_SHOWN = 20


def product_checks(contract: DataProductContract) -> list[dg.AssetChecksDefinition]:
    key = embeddings_key(contract)

    @dg.asset_check(
        asset=key,
        name="index_matches_source",
        blocking=True,
        description=(
            "No ghost rows, no missing documents, one row per chunk: in the shard the run "
            "materialized, or in the whole product when the run had no shard."
        ),
    )
    def index_matches_source(
        context: dg.AssetCheckExecutionContext, index_store: IndexStore
    ) -> dg.AssetCheckResult:
        # Judge only what this run materialized: other shards may be mid-run or not yet built.
        shard = shard_number(context.partition_key) if context.has_partition_key else None
        health = index_health(index_store.engine, contract.name, shard=shard)
        return health_verdict(health, context.partition_key if shard is not None else "all")

    @dg.asset_check(
        asset=chunks_key(contract),
        name="no_quarantined_records",
        description=(
            "Every source record became a document; quarantined ones are listed with the "
            "reason (re-drive them with `mesh-rag quarantine redrive` once fixed)."
        ),
    )
    def no_quarantined_records(
        context: dg.AssetCheckExecutionContext, index_store: IndexStore
    ) -> dg.AssetCheckResult:
        records = quarantined_records(index_store.engine, [contract.name])
        if context.has_partition_key:
            shard = shard_number(context.partition_key)
            records = [r for r in records if _shard_of_record(contract, r.doc_id) == shard]
        rows = [
            f"| {r.source_ref} | {r.record_ref} | {r.field or ''} | {r.reason} |"
            for r in records[:QUARANTINE_SHOWN]
        ]
        table = "\n".join(["| source | record | field | reason |", "|---|---|---|---|", *rows])
        return dg.AssetCheckResult(
            passed=not records,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"quarantined": len(records), "records": dg.MetadataValue.md(table)},
        )

    return [index_matches_source, no_quarantined_records]


def health_verdict(health: IndexHealth | None, scope: str) -> dg.AssetCheckResult:
    """The invariant over `scope` (a shard, or "all"): no ghost rows, one row per chunk."""
    if health is None:
        return dg.AssetCheckResult(passed=False, metadata={"reason": "no live index version"})
    return dg.AssetCheckResult(
        passed=health.ghost_rows == 0 and health.rows == health.expected_rows,
        metadata={
            "shard": scope,
            "live_documents": health.live_documents,
            "ghost_rows": health.ghost_rows,
            "rows": health.rows,
            "expected_rows": health.expected_rows,
            "documents_awaiting_index": health.missing_documents,
        },
    )


def _shard_of_record(contract: DataProductContract, doc_id: str | None) -> int:
    return contract.shard_of(doc_id) if doc_id else QUARANTINE_SHARD
