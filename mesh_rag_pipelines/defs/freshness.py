"""One freshness signal per product: `<product>/in_sync`, green while the index reflects the
source within the contract's SLA, red when it does not, on quiet sources too.

Dagster's time-window freshness policy only looks at when an asset was last materialized. The
index assets materialize when there is work, so a quiet source would look stale and a source
whose changes were never read would look fresh. So freshness is judged from the source's side:
each time a product's sensor looks at its source and finds nothing waiting (no unapplied change,
no document missing from the live index), it records a runless materialization of `in_sync`;
while changes wait, it records an observation with the lag instead. The policy then fails once
changes have waited longer than the SLA, and passes again as soon as they are served.
"""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg

from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.defs.assets import common_attributes, embeddings_key
from mesh_rag_pipelines.pipeline import SourceLag


def in_sync_key(contract: DataProductContract) -> dg.AssetKey:
    return dg.AssetKey([contract.name, "in_sync"])


def in_sync_spec(contract: DataProductContract) -> dg.AssetSpec:
    sla = contract.freshness.sla_timedelta
    return dg.AssetSpec(
        key=in_sync_key(contract),
        deps=[embeddings_key(contract)],
        description=(
            f"Whether {contract.name}'s live index reflects its source; recorded by the "
            f"product's sensor each time it finds nothing waiting. Fails when changes have "
            f"waited longer than the SLA ({contract.freshness.sla})."
        ),
        freshness_policy=dg.FreshnessPolicy.time_window(fail_window=sla),
        kinds={"pgvector"},
        **common_attributes(contract),
    )


def in_sync_event(
    contract: DataProductContract, lag: SourceLag, now: datetime | None = None
) -> dg.AssetMaterialization | dg.AssetObservation:
    """A materialization when nothing waits (the freshness clock restarts), else the lag."""
    now = now or datetime.now(UTC)
    oldest = lag.oldest_change
    metadata: dict[str, dg.RawMetadataValue] = {
        "waiting_changes": lag.waiting_changes,
        "unindexed_documents": lag.unindexed_documents,
        "shards_behind": ", ".join(f"{shard:02d}" for shard in lag.shards) or "none",
        "oldest_waiting_seconds": round((now - oldest).total_seconds(), 1) if oldest else 0.0,
        "sla_seconds": contract.freshness.sla_timedelta.total_seconds(),
    }
    if lag.in_sync:
        return dg.AssetMaterialization(in_sync_key(contract), metadata=metadata)
    return dg.AssetObservation(in_sync_key(contract), metadata=metadata)
