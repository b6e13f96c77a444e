"""Jobs: one per product (what sensors and schedules launch) and one over every product."""

from __future__ import annotations

import dagster as dg

from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.defs.assets import chunks_key, embeddings_key
from mesh_rag_pipelines.defs.partitions import SHARDS

BUILD_ALL = "build_all_products"
VALIDATE_RELEASES = "validate_releases"


def sync_job_name(contract: DataProductContract) -> str:
    return f"sync_{contract.name}"


def product_job(contract: DataProductContract) -> dg.UnresolvedAssetJobDefinition:
    return dg.define_asset_job(
        sync_job_name(contract),
        selection=dg.AssetSelection.assets(chunks_key(contract), embeddings_key(contract)),
        partitions_def=SHARDS,
        description=f"Bring {contract.name}'s index up to date with its source, one shard per run.",
    )


def build_all_job(contracts: list[DataProductContract]) -> dg.UnresolvedAssetJobDefinition:
    keys = [key for c in contracts for key in (chunks_key(c), embeddings_key(c))]
    return dg.define_asset_job(
        BUILD_ALL,
        selection=dg.AssetSelection.assets(*keys),
        partitions_def=SHARDS,
        description="Every product's chunks and embeddings for one shard; backfill it for all.",
    )


def validate_releases_job(contracts: list[DataProductContract]) -> dg.UnresolvedAssetJobDefinition:
    from mesh_rag_pipelines.defs.releases import release_key

    return dg.define_asset_job(
        VALIDATE_RELEASES,
        selection=dg.AssetSelection.assets(*[release_key(c) for c in contracts]),
        description="Validate each product's complete candidate index version (after a backfill).",
    )
