"""One freshness signal per product: `<product>/in_sync`, green while the index reflects the
source within the contract's SLA, red when it does not, on quiet sources too.

Dagster's time-window freshness policy only looks at when an asset was last materialized. The
index assets materialize when there is work, so a quiet source would look stale and a source
whose changes were never read would look fresh. So freshness is judged from the source's side by
the product's sensor, on every tick: the changes its last look found waiting in the source (less
those of shards synced since), and the documents the live index does not serve yet.

- Nothing waits: a runless materialization of `in_sync` renews the freshness clock, at once when
  the index catches up and again on every look at the source.
- Something waits: no renewal, so the policy fails once the oldest waiting change is older than
  the SLA; an observation records the lag (the UI plots it).
- The check `nothing_waiting` always holds the judgment of now (what waits, since when, which
  shards), so the asset's page never shows an old number as the current one; it can also be
  executed from the UI, reading the source at that moment.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import dagster as dg

from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.orchestration.assets import common_attributes, embeddings_key
from mesh_rag_pipelines.orchestration.resources import IndexStore, LandingZone, source_context
from mesh_rag_pipelines.pipeline import SourceLag, judge_freshness

IN_SYNC_CHECK = "nothing_waiting"


def in_sync_key(contract: DataProductContract) -> dg.AssetKey:
    return dg.AssetKey([contract.name, "in_sync"])


def in_sync_spec(contract: DataProductContract) -> dg.AssetSpec:
    sla = contract.freshness.sla_timedelta
    return dg.AssetSpec(
        key=in_sync_key(contract),
        deps=[embeddings_key(contract)],
        description=(
            f"Whether {contract.name}'s live index reflects its source; renewed by the product's "
            "sensor whenever nothing waits. Fails when changes have waited longer than the SLA "
            f"({contract.freshness.sla}). What waits now: the check `{IN_SYNC_CHECK}`."
        ),
        freshness_policy=dg.FreshnessPolicy.time_window(fail_window=sla),
        kinds={"pgvector"},
        **common_attributes(contract),
    )


def lag_metadata(contract: DataProductContract, lag: SourceLag, now: datetime) -> dict[str, Any]:
    oldest = lag.oldest_change
    return {
        "waiting_changes": lag.waiting_changes,
        "unindexed_documents": lag.unindexed_documents,
        "shards_behind": ", ".join(f"{shard:02d}" for shard in lag.shards) or "none",
        "oldest_waiting_seconds": round((now - oldest).total_seconds(), 1) if oldest else 0.0,
        "sla_seconds": contract.freshness.sla_timedelta.total_seconds(),
        "judged_at": now.isoformat(timespec="seconds"),
    }


def lag_check(contract: DataProductContract, lag: SourceLag, now: datetime) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=in_sync_key(contract),
        check_name=IN_SYNC_CHECK,
        passed=lag.in_sync,
        severity=dg.AssetCheckSeverity.WARN,
        metadata=lag_metadata(contract, lag, now),
    )


def judgment_events(
    contract: DataProductContract, lag: SourceLag, now: datetime, *, renew: bool
) -> list[dg.AssetMaterialization | dg.AssetObservation | dg.AssetCheckEvaluation]:
    """What the product's sensor records of one judgment: the check always; a renewal when
    nothing waits and `renew`; else the lag as an observation."""
    key = in_sync_key(contract)
    metadata = lag_metadata(contract, lag, now)
    events: list[dg.AssetMaterialization | dg.AssetObservation | dg.AssetCheckEvaluation] = [
        dg.AssetCheckEvaluation(
            asset_key=key,
            check_name=IN_SYNC_CHECK,
            passed=lag.in_sync,
            severity=dg.AssetCheckSeverity.WARN,
            metadata=metadata,  # type: ignore[arg-type]
        )
    ]
    if lag.in_sync and renew:
        events.append(dg.AssetMaterialization(key, metadata=metadata))
    elif not lag.in_sync:
        events.append(dg.AssetObservation(key, metadata=metadata))
    return events


def in_sync_check(contract: DataProductContract) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=in_sync_key(contract),
        name=IN_SYNC_CHECK,
        description=(
            "Nothing waits: no change in the source that the store has not applied, no document "
            "the live index does not serve. The product's sensor records this judgment on every "
            "tick; executing the check reads the source now."
        ),
    )
    def _nothing_waiting(index_store: IndexStore, landing_zone: LandingZone) -> dg.AssetCheckResult:
        lag = judge_freshness(contract, source_context(contract, index_store, landing_zone))
        return lag_check(contract, lag, datetime.now(UTC))

    return _nothing_waiting
