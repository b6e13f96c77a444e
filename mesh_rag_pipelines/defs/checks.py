"""Asset checks beside each embedding index: the invariant, freshness, golden queries."""

import dagster as dg

from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.defs.assets import embeddings_key
from mesh_rag_pipelines.defs.resources import EmbeddingModels, IndexStore
from mesh_rag_pipelines.retrieval import search
from mesh_rag_pipelines.store.health import index_health

GOLDEN_K = 5


def product_checks(contract: DataProductContract) -> list[dg.AssetChecksDefinition]:
    key = embeddings_key(contract)

    @dg.asset_check(
        asset=key,
        name="index_matches_source",
        blocking=True,
        description="No ghost rows, no missing documents, one row per chunk.",
    )
    def index_matches_source(index_store: IndexStore) -> dg.AssetCheckResult:
        health = index_health(index_store.engine, contract.name, contract.chunking.identity)
        if health is None:
            return dg.AssetCheckResult(passed=False, metadata={"reason": "no live index version"})
        return dg.AssetCheckResult(
            passed=health.ghost_rows == 0 and health.rows == health.expected_rows,
            metadata={
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
        health = index_health(index_store.engine, contract.name, contract.chunking.identity)
        lag = health.lag_seconds() if health else float("inf")
        return dg.AssetCheckResult(
            passed=lag <= sla.total_seconds(),
            metadata={"lag_seconds": round(lag, 1), "sla_seconds": sla.total_seconds()},
        )

    checks = [index_matches_source, freshness_within_sla]
    if contract.golden_queries:

        @dg.asset_check(
            asset=key,
            name="golden_queries",
            description=f"Each golden query finds its document in the top {GOLDEN_K}.",
        )
        def golden_queries(
            index_store: IndexStore, embedding_models: EmbeddingModels
        ) -> dg.AssetCheckResult:
            embedder = embedding_models.for_spec(contract.embedding)
            misses = []
            for golden in contract.golden_queries:
                hits = search(
                    index_store.engine,
                    [contract],
                    golden.query,
                    k=GOLDEN_K,
                    embedders={contract.embedding.model_id: embedder},
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
