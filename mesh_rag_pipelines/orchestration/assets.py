"""Per product: source -> chunks -> embeddings, generated from the contract alone.

`<product>/source` is the external source, observed by the product's sensor. `chunks` and
`embeddings` are materialized together, one shard per run, by one step that calls
`pipeline.sync_shard`: the one way a shard is synced. When the shard's share of records breaking
the contract's quality rules passes the contract's limit, the step materializes `chunks` only
(its blocking check fails) and the index waits.
"""

import time
from dataclasses import asdict
from typing import Any

import dagster as dg
from sqlalchemy import Engine
from sqlalchemy.dialects import postgresql

from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.orchestration.checks import (
    chunks_check_results,
    chunks_check_specs,
    embeddings_check_results,
    embeddings_check_specs,
)
from mesh_rag_pipelines.orchestration.conditions import index_condition
from mesh_rag_pipelines.orchestration.partitions import shard_number, shard_partitions
from mesh_rag_pipelines.orchestration.resources import (
    EmbeddingModels,
    IndexStore,
    LandingZone,
    source_context,
)
from mesh_rag_pipelines.pipeline import ShardResult, SyncDeps, sync_shard
from mesh_rag_pipelines.store.health import index_rows
from mesh_rag_pipelines.store.index_versions import index_version_id, live_versions
from mesh_rag_pipelines.store.index_writer import IndexResult
from mesh_rag_pipelines.store.schema import index_table


def _index_columns() -> dg.TableSchema:
    """The columns of every index-version table, as the table defines them."""
    table = index_table("index_version_table", 1, "cosine")
    dialect = postgresql.dialect()
    return dg.TableSchema(
        columns=[
            dg.TableColumn(column.name, column.type.compile(dialect=dialect).lower())
            for column in table.columns
        ]
    )


def source_key(contract: DataProductContract) -> dg.AssetKey:
    return dg.AssetKey([contract.name, "source"])


def chunks_key(contract: DataProductContract) -> dg.AssetKey:
    return dg.AssetKey([contract.name, "chunks"])


def embeddings_key(contract: DataProductContract) -> dg.AssetKey:
    return dg.AssetKey([contract.name, "embeddings"])


def common_attributes(contract: DataProductContract) -> dict:
    return {
        "group_name": contract.domain,
        "owners": [contract.owner],
        "tags": {"domain": contract.domain, "document_type": contract.document_type},
    }


def source_spec(contract: DataProductContract) -> dg.AssetSpec:
    source = contract.source
    where = source.where(contract)
    return dg.AssetSpec(
        key=source_key(contract),
        description=(
            f"{contract.description.strip()}\n\nSource ({source.kind}): {where}. "
            "Each shard is recorded by the product's sensor when its data version changes."
        ),
        partitions_def=shard_partitions(contract),
        kinds={source.dagster_kind},
        metadata={
            "source_kind": source.kind,
            "location": where,
            "pii_fields": ", ".join(contract.pii_fields) or "none",
        },
        **common_attributes(contract),
    )


def embedding_pool(contract: DataProductContract) -> str | None:
    """Runs that call an embedding API share its rate limit through one Dagster pool (its slots:
    `concurrency.pools` in the instance settings); a local model runs on the worker's own CPU."""
    return "openai_embeddings" if contract.embedding.provider == "openai" else None


def sync_asset(contract: DataProductContract) -> dg.AssetsDefinition:
    """The shard's chunks and embeddings, synced in one step."""
    chunks = dg.AssetSpec(
        key=chunks_key(contract),
        deps=[source_key(contract)],
        kinds={"python", "postgres"},
        description=(
            f"Document state and chunk set of {contract.name} "
            f"(chunker {contract.chunking.identity}); changed documents only."
        ),
        code_version=contract.chunking.identity,
        automation_condition=index_condition(contract),
        **common_attributes(contract),
    )
    embeddings = dg.AssetSpec(
        key=embeddings_key(contract),
        # The source too: a source shard seen at a new version shows the index itself stale.
        deps=[chunks_key(contract), source_key(contract)],
        kinds={"pgvector", "postgres"},
        description=(
            f"Embedding index of {contract.name}: model {contract.embedding.model}, "
            f"{contract.embedding.dimensions} dimensions, {contract.embedding.distance} "
            "HNSW; every row carries its provenance."
        ),
        code_version=index_version_id(contract),
        automation_condition=index_condition(contract),
        skippable=True,
        **common_attributes(contract),
    )

    @dg.multi_asset(
        name=f"{contract.name}__sync",
        specs=[chunks, embeddings],
        check_specs=[
            *chunks_check_specs(contract, chunks_key(contract)),
            *embeddings_check_specs(embeddings_key(contract)),
        ],
        partitions_def=shard_partitions(contract),
        pool=embedding_pool(contract),
    )
    def _sync(
        context: dg.AssetExecutionContext,
        index_store: IndexStore,
        landing_zone: LandingZone,
        embedding_models: EmbeddingModels,
    ) -> Any:
        shard = shard_number(context.partition_key)
        started = time.perf_counter()
        deps = SyncDeps(
            source_context(contract, index_store, landing_zone), embedding_models.for_spec
        )
        result = sync_shard(contract, shard, deps)
        log_shard(context.log, contract, result)
        engine = index_store.engine
        yield dg.MaterializeResult(
            asset_key=chunks_key(contract),
            metadata=chunks_metadata(contract, result, time.perf_counter() - started),
            check_results=chunks_check_results(
                contract, shard, result.chunks, result.schema_drift, engine, chunks_key(contract)
            ),
        )
        if result.index is not None:
            yield dg.MaterializeResult(
                asset_key=embeddings_key(contract),
                metadata=embeddings_metadata(contract, result, engine),
                check_results=embeddings_check_results(
                    contract, shard, engine, embeddings_key(contract)
                ),
            )

    return _sync


_DRIFT = {"unexpected_fields", "schema_changes"}
_PER_VERSION = {"index_version", "table_name", "index_built", "versions", "oldest_pending_change"}


def _rounded(metadata: dict[str, Any]) -> dict[str, Any]:
    """Durations to the millisecond: more digits are noise in the UI."""
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in metadata.items()}


def chunks_metadata(
    contract: DataProductContract, result: ShardResult, seconds: float
) -> dict[str, Any]:
    """What the chunks step did, as the UI shows it (also logged by `sync_now`)."""
    metadata = {k: v for k, v in asdict(result.chunks).items() if k not in _DRIFT}
    return {
        **_rounded(metadata),
        "schema_drift": "; ".join(result.schema_drift) or "none",
        "chunker": contract.chunking.identity,
        "seconds": round(seconds, 3),
    }


def embeddings_metadata(
    contract: DataProductContract, result: ShardResult, engine: Engine
) -> dict[str, Any]:
    """What the index step did to every maintained version, with the live table's size."""
    index = result.index or IndexResult()
    metadata = {k: v for k, v in asdict(index).items() if k not in _PER_VERSION}
    oldest = index.oldest_pending_change
    live = live_versions(engine, [contract.name])
    table = live[0].table_name if live else None
    return {
        **_rounded(metadata),
        "model_loaded": result.model_load_seconds > 0,
        "model_load_seconds": round(result.model_load_seconds, 3),
        "versions": dg.MetadataValue.md(_versions_table(index)),
        "oldest_change_wait_seconds": round(time.time() - oldest.timestamp(), 3) if oldest else 0.0,
        # The product's rows (what the table holds), and the shard's.
        "dagster/row_count": index_rows(engine, table) if table else 0,
        "shard_rows": index_rows(engine, table, result.shard) if table else 0,
        "dagster/table_name": f"mesh_rag.{table}" if table else "",
        "dagster/column_schema": _index_columns(),
    }


def log_shard(log: Any, contract: DataProductContract, result: ShardResult) -> None:
    """One line per step of a shard's sync, and a warning per problem a person should see."""
    chunks, shard = result.chunks, f"{result.shard:02d}"
    log.info(
        f"{contract.name} shard {shard}: {chunks.documents_changed} documents changed, "
        f"{chunks.documents_deleted} deleted, {chunks.documents_unchanged} unchanged; "
        f"{chunks.chunks_written} chunks written, {chunks.chunks_removed} removed"
    )
    if chunks.quarantined:
        log.warning(
            f"{contract.name} shard {shard}: {chunks.quarantined} records quarantined; list them "
            f"with `mesh-rag quarantine list --product {contract.name}`"
        )
    for line in result.schema_drift:
        log.warning(f"{contract.name} shard {shard}: schema drift: {line}")
    if result.index is None:
        log.warning(
            f"{contract.name} shard {shard}: {result.violation_rate:.0%} of the records break "
            f"the contract's quality rules (limit {contract.quality.max_violation_rate:.0%}): "
            "the index waits until they are fixed"
        )
        return
    index = result.index
    loading = result.model_load_seconds
    model = f"model loaded in {loading:.1f} s" if loading else "no model loaded"
    log.info(
        f"{contract.name} shard {shard}: {index.documents_indexed} documents indexed, "
        f"{index.documents_removed} removed; {index.texts_embedded} texts embedded, "
        f"{index.cache_hits} cache hits; {model}"
    )


def _versions_table(result: IndexResult) -> str:
    """Each maintained version's share of the run, for the UI."""
    rows = [
        f"| {r.index_version} | {r.documents_indexed} | {r.documents_removed} | "
        f"{r.texts_embedded} | {r.cache_hits} | {'yes' if r.index_built else ''} |"
        for r in result.versions
    ]
    header = "| version | documents indexed | removed | texts embedded | cache hits | HNSW built |"
    return "\n".join([header, "|---|---|---|---|---|---|", *rows])


def product_assets(contract: DataProductContract) -> list[dg.AssetSpec | dg.AssetsDefinition]:
    return [source_spec(contract), sync_asset(contract)]
