"""Asset checks beside each embedding index: the invariant, freshness, golden queries."""

import dagster as dg

from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.defs.assets import chunks_key, embeddings_key
from mesh_rag_pipelines.defs.partitions import shard_number
from mesh_rag_pipelines.defs.resources import EmbeddingModels, IndexStore
from mesh_rag_pipelines.retrieval import Caller, search
from mesh_rag_pipelines.store.health import index_health
from mesh_rag_pipelines.store.index_versions import live_versions
from mesh_rag_pipelines.store.quarantine import quarantined_records

GOLDEN_K = 5
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
        if health is None:
            return dg.AssetCheckResult(passed=False, metadata={"reason": "no live index version"})
        return dg.AssetCheckResult(
            passed=health.ghost_rows == 0 and health.rows == health.expected_rows,
            metadata={
                "shard": context.partition_key if shard is not None else "all",
                "live_documents": health.live_documents,
                "ghost_rows": health.ghost_rows,
                "rows": health.rows,
                "expected_rows": health.expected_rows,
                "documents_awaiting_index": health.missing_documents,
            },
        )

    sla = contract.freshness.sla_timedelta

    @dg.asset_check(
        asset=key,
        name="freshness_within_sla",
        description=f"Oldest change not yet queryable is younger than {contract.freshness.sla}.",
    )
    def freshness_within_sla(index_store: IndexStore) -> dg.AssetCheckResult:
        health = index_health(index_store.engine, contract.name)
        lag = health.lag_seconds() if health else float("inf")
        return dg.AssetCheckResult(
            passed=lag <= sla.total_seconds(),
            metadata={"lag_seconds": round(lag, 1), "sla_seconds": sla.total_seconds()},
        )

    @dg.asset_check(
        asset=chunks_key(contract),
        name="no_quarantined_records",
        description=(
            "Every source record became a document; quarantined ones are listed with the "
            "reason (re-drive them with `mesh-rag quarantine redrive` once fixed)."
        ),
    )
    def no_quarantined_records(index_store: IndexStore) -> dg.AssetCheckResult:
        records = quarantined_records(index_store.engine, [contract.name])
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

    checks = [index_matches_source, freshness_within_sla, no_quarantined_records]
    if contract.golden_queries:

        @dg.asset_check(
            asset=key,
            name="golden_queries",
            description=f"Each golden query finds its document in the top {GOLDEN_K}.",
        )
        def golden_queries(
            index_store: IndexStore, embedding_models: EmbeddingModels
        ) -> dg.AssetCheckResult:
            embedders = {
                version.model_id: embedding_models.for_spec(version.embedding_spec)
                for version in live_versions(index_store.engine, [contract.name])
            }
            misses = []
            for golden in contract.golden_queries:
                hits = search(
                    index_store.engine,
                    [contract],
                    golden.query,
                    Caller.of_product(contract),
                    k=GOLDEN_K,
                    unit="documents",
                    embedders=embedders,
                )
                if not {h.doc_id for h in hits} & set(golden.expected_document_ids):
                    misses.append(golden.query)
            total = len(contract.golden_queries)
            return dg.AssetCheckResult(
                passed=not misses,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={"hit_rate": (total - len(misses)) / total, "misses": "; ".join(misses)},
            )

        checks.append(golden_queries)
    return checks
