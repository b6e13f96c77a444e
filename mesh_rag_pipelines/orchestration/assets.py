"""Per product: source -> chunks -> embeddings, generated from the contract alone."""

import time
from dataclasses import asdict
from typing import Any

import dagster as dg
from sqlalchemy.dialects import postgresql

from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.embedding.local_model import model_load_seconds
from mesh_rag_pipelines.orchestration.checks import (
    chunks_check_results,
    chunks_check_specs,
    embeddings_check_results,
    embeddings_check_specs,
)
from mesh_rag_pipelines.orchestration.conditions import index_condition
from mesh_rag_pipelines.orchestration.partitions import shard_number, shard_partitions
from mesh_rag_pipelines.orchestration.resources import EmbeddingModels, IndexStore, LandingZone
from mesh_rag_pipelines.pipeline import SourceAccess, refresh_chunk_set
from mesh_rag_pipelines.store.chunk_set import ChunkSetResult
from mesh_rag_pipelines.store.health import index_rows
from mesh_rag_pipelines.store.index_versions import index_version_id, live_versions
from mesh_rag_pipelines.store.index_writer import IndexResult, refresh_index
from mesh_rag_pipelines.store.schema import index_table

_SOURCE_KINDS = {"postgres_table": "postgres", "files": "markdown", "s3_landing": "s3"}


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
    where = (
        contract.source.table
        or contract.source.path
        or (f"s3://{contract.source.bucket}/{contract.source.prefix}")
    )
    return dg.AssetSpec(
        key=source_key(contract),
        description=(
            f"{contract.description.strip()}\n\nSource ({contract.source.kind}): {where}. "
            "Each shard is recorded by the product's sensor when its data version changes."
        ),
        partitions_def=shard_partitions(contract),
        kinds={_SOURCE_KINDS[contract.source.kind]},
        metadata={
            "source_kind": contract.source.kind,
            "location": where,
            "pii_fields": ", ".join(contract.pii_fields) or "none",
        },
        **common_attributes(contract),
    )


def chunks_asset(contract: DataProductContract) -> dg.AssetsDefinition:
    @dg.asset(
        key=chunks_key(contract),
        deps=[source_key(contract)],
        partitions_def=shard_partitions(contract),
        kinds={"python", "postgres"},
        description=(
            f"Document state and chunk set of {contract.name} "
            f"(chunker {contract.chunking.identity}); changed documents only."
        ),
        code_version=contract.chunking.identity,
        automation_condition=index_condition(contract),
        check_specs=chunks_check_specs(contract, chunks_key(contract)),
        **common_attributes(contract),
    )
    def _chunks(
        context: dg.AssetExecutionContext, index_store: IndexStore, landing_zone: LandingZone
    ) -> dg.MaterializeResult:
        shard = shard_number(context.partition_key)
        started = time.perf_counter()
        s3 = landing_zone.get_client() if contract.source.kind == "s3_landing" else None
        result = refresh_chunk_set(contract, shard, SourceAccess(index_store.engine, s3))
        context.log.info(_chunks_summary(contract, shard, result))
        if result.quarantined:
            context.log.warning(
                f"{contract.name} shard {shard}: {result.quarantined} records quarantined; "
                "list them with `mesh-rag quarantine list`"
            )
        drift = [
            f"unexpected field {name!r} in {n} records"
            for name, n in result.unexpected_fields.items()
        ]
        drift += result.schema_changes
        for line in drift:
            context.log.warning(f"{contract.name} shard {shard}: schema drift: {line}")
        metadata = {k: v for k, v in asdict(result).items() if k not in _DRIFT}
        return dg.MaterializeResult(
            metadata={
                **_rounded(metadata),
                "schema_drift": "; ".join(drift) or "none",
                "chunker": contract.chunking.identity,
                "seconds": round(time.perf_counter() - started, 3),
            },
            check_results=chunks_check_results(contract, shard, result, drift, index_store.engine),
        )

    return _chunks


def embedding_pool(contract: DataProductContract) -> str | None:
    """Runs that call an embedding API share its rate limit through one Dagster pool (its slots:
    `concurrency.pools` in the instance settings); a local model runs on the worker's own CPU."""
    return "openai_embeddings" if contract.embedding.provider == "openai" else None


def embeddings_asset(contract: DataProductContract) -> dg.AssetsDefinition:
    @dg.asset(
        key=embeddings_key(contract),
        # The source too: a source shard seen at a new version shows the index itself stale.
        deps=[chunks_key(contract), source_key(contract)],
        partitions_def=shard_partitions(contract),
        kinds={"pgvector", "postgres"},
        description=(
            f"Embedding index of {contract.name}: model {contract.embedding.model}, "
            f"{contract.embedding.dimensions} dimensions, {contract.embedding.distance} "
            "HNSW; every row carries its provenance."
        ),
        code_version=index_version_id(contract),
        automation_condition=index_condition(contract),
        pool=embedding_pool(contract),
        check_specs=embeddings_check_specs(embeddings_key(contract)),
        **common_attributes(contract),
    )
    def _embeddings(
        context: dg.AssetExecutionContext,
        index_store: IndexStore,
        embedding_models: EmbeddingModels,
    ) -> dg.MaterializeResult:
        shard = shard_number(context.partition_key)
        started = time.perf_counter()
        loading_before = model_load_seconds()
        result = refresh_index(index_store.engine, contract, shard, embedding_models.for_spec)
        loading = model_load_seconds() - loading_before
        context.log.info(_index_summary(contract, shard, result, loading))
        metadata = {k: v for k, v in asdict(result).items() if k not in _PER_VERSION}
        oldest = result.oldest_pending_change
        lag = time.time() - oldest.timestamp() if oldest else 0.0
        live = live_versions(index_store.engine, [contract.name])
        table = live[0].table_name if live else None
        return dg.MaterializeResult(
            metadata={
                **_rounded(metadata),
                "model_loaded": loading > 0,
                "model_load_seconds": round(loading, 3),
                "versions": dg.MetadataValue.md(_versions_table(result)),
                "oldest_change_wait_seconds": round(lag, 3),
                "seconds": round(time.perf_counter() - started, 3),
                # The product's rows (what the table holds), and the shard's.
                "dagster/row_count": index_rows(index_store.engine, table) if table else 0,
                "shard_rows": index_rows(index_store.engine, table, shard) if table else 0,
                "dagster/table_name": f"mesh_rag.{table}" if table else "",
                "dagster/column_schema": _index_columns(),
            },
            check_results=embeddings_check_results(contract, shard, index_store.engine),
        )

    return _embeddings


_DRIFT = {"unexpected_fields", "schema_changes"}


def _rounded(metadata: dict[str, Any]) -> dict[str, Any]:
    """Durations to the millisecond: more digits are noise in the UI."""
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in metadata.items()}


def _chunks_summary(contract: DataProductContract, shard: int, result: ChunkSetResult) -> str:
    return (
        f"{contract.name} shard {shard:02d}: {result.documents_changed} documents changed, "
        f"{result.documents_deleted} deleted, {result.documents_unchanged} unchanged; "
        f"{result.chunks_written} chunks written, {result.chunks_removed} removed"
    )


def _index_summary(
    contract: DataProductContract, shard: int, result: IndexResult, loading: float
) -> str:
    model = f"model loaded in {loading:.1f} s" if loading else "no model loaded"
    return (
        f"{contract.name} shard {shard:02d}: {result.documents_indexed} documents indexed, "
        f"{result.documents_removed} removed; {result.texts_embedded} texts embedded, "
        f"{result.cache_hits} cache hits; {model}"
    )


_PER_VERSION = {"index_version", "table_name", "index_built", "versions", "oldest_pending_change"}


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
    return [source_spec(contract), chunks_asset(contract), embeddings_asset(contract)]
