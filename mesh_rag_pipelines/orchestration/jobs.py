"""Jobs: one per product for shard runs (what sensors, automation conditions and backfills
launch), a "sync now" with Launchpad options, and one that validates every product's release
candidate."""

import time

import dagster as dg
from pydantic import Field

from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.orchestration.assets import (
    chunks_key,
    chunks_metadata,
    embeddings_key,
    embeddings_metadata,
    log_shard,
)
from mesh_rag_pipelines.orchestration.partitions import shard_key
from mesh_rag_pipelines.orchestration.resources import (
    EmbeddingModels,
    IndexStore,
    LandingZone,
    source_context,
)
from mesh_rag_pipelines.pipeline import SyncDeps, read_source, source_lag, sync_shard
from mesh_rag_pipelines.sources.base import SourceContext
from mesh_rag_pipelines.store.chunk_set import known_documents

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
        ctx = source_context(contract, index_store, landing_zone)
        if config.doc_ids:
            shards = sorted({contract.shard_of(doc_id) for doc_id in config.doc_ids})
        elif config.force_reembed:
            shards = list(range(contract.shards))
        else:
            shards = list(source_lag(contract, ctx).shards)
        context.log.info(
            f"{contract.name}: shards {', '.join(map(shard_key, shards)) or 'none'} to sync"
        )
        for shard in shards:
            if config.dry_run:
                _report_plan(context, contract, shard, ctx)
                continue
            started = time.perf_counter()
            reembed = (
                (config.doc_ids or list(known_documents(ctx.engine, contract.name, shard)))
                if config.force_reembed
                else []
            )
            result = sync_shard(
                contract, shard, SyncDeps(ctx, embedding_models.for_spec), reembed=reembed
            )
            log_shard(context.log, contract, result)
            # Recorded as the assets' own step records them: the UI sees the shard synced.
            context.log_event(
                dg.AssetMaterialization(
                    chunks_key(contract),
                    partition=shard_key(shard),
                    metadata=chunks_metadata(contract, result, time.perf_counter() - started),
                )
            )
            if result.index is not None:
                context.log_event(
                    dg.AssetMaterialization(
                        embeddings_key(contract),
                        partition=shard_key(shard),
                        metadata=embeddings_metadata(contract, result, ctx.engine),
                    )
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
    ctx: SourceContext,
) -> None:
    read = read_source(contract, shard, ctx)
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
