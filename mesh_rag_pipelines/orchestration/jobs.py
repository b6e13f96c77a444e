"""Jobs: one per product for shard runs (what sensors, automation conditions and backfills
launch), a "sync now" with Launchpad options, and one that validates every product's release
candidate."""

import dagster as dg
from pydantic import Field

from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.orchestration.assets import chunks_key, embeddings_key
from mesh_rag_pipelines.orchestration.partitions import shard_key
from mesh_rag_pipelines.orchestration.resources import EmbeddingModels, IndexStore, LandingZone
from mesh_rag_pipelines.pipeline import (
    SourceAccess,
    read_source,
    refresh_chunk_set,
    source_lag,
)
from mesh_rag_pipelines.store.chunk_set import known_documents
from mesh_rag_pipelines.store.index_writer import reembed_documents, refresh_index

VALIDATE_RELEASES = "validate_releases"
DRY_RUN_SHOWN = 50


def sync_job_name(contract: DataProductContract) -> str:
    return f"sync_{contract.name}"


def sync_now_job_name(contract: DataProductContract) -> str:
    return f"sync_now_{contract.name}"


def product_job(contract: DataProductContract) -> "dg.UnresolvedAssetJobDefinition":
    return dg.define_asset_job(
        sync_job_name(contract),
        selection=dg.AssetSelection.assets(chunks_key(contract), embeddings_key(contract)),
        description=f"Bring {contract.name}'s index up to date with its source, one shard per run.",
        tags={"domain": contract.domain},
    )


class SyncNow(dg.Config):
    """What `sync_now_<product>` does; with nothing set, it syncs every shard with changes."""

    doc_ids: list[str] = Field(
        default_factory=list,
        description="Sync the shards of these documents (found for you), whatever the source says.",
    )
    force_reembed: bool = Field(
        default=False,
        description=(
            "Embed again, ignoring the cache: the documents in doc_ids, or every document of "
            "the product."
        ),
    )
    dry_run: bool = Field(
        default=False, description="Report what would change, per shard; write nothing."
    )


def sync_now_job(contract: DataProductContract) -> dg.JobDefinition:
    """One run for the shards that need it, instead of a backfill over every shard."""

    @dg.op(name=f"{contract.name}_sync_now")
    def _sync(
        context: dg.OpExecutionContext,
        config: SyncNow,
        index_store: IndexStore,
        landing_zone: LandingZone,
        embedding_models: EmbeddingModels,
    ) -> None:
        s3 = landing_zone.get_client() if contract.source.kind == "s3_landing" else None
        access = SourceAccess(index_store.engine, s3)
        if config.doc_ids:
            shards = sorted({contract.shard_of(doc_id) for doc_id in config.doc_ids})
        elif config.force_reembed:
            shards = list(range(contract.shards))
        else:
            shards = list(source_lag(contract, access).shards)
        context.log.info(
            f"{contract.name}: shards {', '.join(map(shard_key, shards)) or 'none'} to sync"
        )
        for shard in shards:
            if config.dry_run:
                _report_plan(context, contract, shard, access)
                continue
            chunks = refresh_chunk_set(contract, shard, access)
            if config.force_reembed:
                doc_ids = config.doc_ids or list(
                    known_documents(access.engine, contract.name, shard)
                )
                mine = [d for d in doc_ids if contract.shard_of(d) == shard]
                reembed_documents(access.engine, contract, mine)
            index = refresh_index(access.engine, contract, shard, embedding_models.for_spec)
            summary = {
                "documents_changed": chunks.documents_changed,
                "documents_deleted": chunks.documents_deleted,
                "quarantined": chunks.quarantined,
                "documents_indexed": index.documents_indexed,
                "texts_embedded": index.texts_embedded,
                "cache_hits": index.cache_hits,
            }
            context.log.info(f"{contract.name} shard {shard_key(shard)}: {summary}")
            for key in (chunks_key(contract), embeddings_key(contract)):
                context.log_event(
                    dg.AssetMaterialization(key, partition=shard_key(shard), metadata=summary)
                )

    @dg.job(
        name=sync_now_job_name(contract),
        description=(
            f"Sync {contract.name} now, in one run: the shards with changes waiting (or those "
            "of the given document ids), optionally re-embedding or as a dry run."
        ),
        tags={"domain": contract.domain},
    )
    def _job() -> None:
        _sync()

    return _job


def _report_plan(
    context: dg.OpExecutionContext,
    contract: DataProductContract,
    shard: int,
    access: SourceAccess,
) -> None:
    read = read_source(contract, shard, access)
    upserts = [c.doc_id for c in read.changes if c.op == "upsert"]
    deletes = [c.doc_id for c in read.changes if c.op == "delete"]
    context.log.info(
        f"{contract.name} shard {shard_key(shard)} (dry run): {len(upserts)} documents to "
        f"upsert {upserts[:DRY_RUN_SHOWN]}, {len(deletes)} to delete {deletes[:DRY_RUN_SHOWN]}, "
        f"{len(read.quarantined)} records to quarantine"
    )


def validate_releases_job(
    contracts: list[DataProductContract],
) -> "dg.UnresolvedAssetJobDefinition":
    from mesh_rag_pipelines.orchestration.releases import release_key

    return dg.define_asset_job(
        VALIDATE_RELEASES,
        selection=dg.AssetSelection.assets(*[release_key(c) for c in contracts]),
        description="Validate each product's complete candidate index version (after a backfill).",
    )
