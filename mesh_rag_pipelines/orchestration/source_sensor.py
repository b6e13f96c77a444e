"""The sensor of a polled source (a table, a folder): it looks at the source on the contract's
cadence and records each shard's data version, and on every tick judges whether the index is in
sync (see freshness.py).

A shard seen at a new version, or still behind the version recorded for it (a change recorded
while automation was off, or one a failed run did not apply), is announced (see
source_versions.py); the index assets' automation condition then syncs exactly those shards. A
shard with a run queued or in progress is not announced again: that run will settle it, and the
next look checks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

import dagster as dg

from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.orchestration.assets import chunks_key
from mesh_rag_pipelines.orchestration.freshness import judgment_events
from mesh_rag_pipelines.orchestration.resources import IndexStore
from mesh_rag_pipelines.orchestration.source_versions import (
    recorded_versions,
    shards_behind,
    source_version_events,
)
from mesh_rag_pipelines.pipeline import current_source_versions, judge_freshness, waiting_changes
from mesh_rag_pipelines.sources.base import SourceContext

# The sensor daemon runs sensors every 5 s at most; this lets it run this one on every pass, so
# a look that is due starts within 5 s. Looks follow the contract's cadence, judgments each tick.
SOURCE_INTERVAL_SECONDS = 1
_IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]

Waiting = list[tuple[int, datetime | None]]


@dataclass(frozen=True)
class SourceCursor:
    """When the source was last looked at, the changes found waiting then (shard, changed at),
    and whether the last judgment found the product in sync."""

    observed_at: datetime | None = None
    waiting: Waiting = field(default_factory=list)
    in_sync: bool | None = None

    def due(self, contract: DataProductContract, now: datetime) -> bool:
        return self.observed_at is None or contract.freshness.next_poll(self.observed_at) <= now

    def to_json(self) -> str:
        return json.dumps(
            {
                "observed_at": self.observed_at.isoformat() if self.observed_at else None,
                "waiting": [[s, at.isoformat() if at else None] for s, at in self.waiting],
                "in_sync": self.in_sync,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str | None) -> SourceCursor:
        raw = json.loads(text) if text else {}
        if "waiting" not in raw:  # none yet, or a cursor of an earlier release: look now
            return cls()
        observed = raw.get("observed_at")
        return cls(
            datetime.fromisoformat(observed) if observed else None,
            [(s, datetime.fromisoformat(at) if at else None) for s, at in raw["waiting"]],
            raw.get("in_sync"),
        )


def _in_flight(instance: dg.DagsterInstance, contract: DataProductContract) -> set[int]:
    """Shards whose chunks have a run queued or in progress."""
    runs = instance.get_runs(dg.RunsFilter(statuses=_IN_FLIGHT))
    return {
        int(run.tags["dagster/partition"])
        for run in runs
        if run.tags.get("dagster/partition", "").isdigit()
        and chunks_key(contract) in (run.asset_selection or set())
    }


def source_sensor(contract: DataProductContract) -> dg.SensorDefinition:
    @dg.sensor(
        name=f"{contract.name}_source_sensor",
        minimum_interval_seconds=SOURCE_INTERVAL_SECONDS,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"Looks at {contract.name}'s {contract.source.kind} source "
            f"{contract.freshness.cadence}: per-shard data versions (a changed shard shows as "
            "stale and is synced by its automation condition); judges on every tick whether "
            "the index is in sync."
        ),
    )
    def _sensor(context: dg.SensorEvaluationContext, index_store: IndexStore) -> dg.SensorResult:
        now = datetime.now(UTC)
        cursor = SourceCursor.from_json(context.cursor)
        ctx = SourceContext(index_store.engine, index_store.settings)
        recorded = recorded_versions(context.instance, contract)
        behind = shards_behind(context.instance, contract, recorded)
        events: list = []
        waiting, observed_at = cursor.waiting, cursor.observed_at
        if cursor.due(contract, now):
            observed = current_source_versions(contract, ctx)
            stalled = behind - _in_flight(context.instance, contract)
            for shard, seen in observed.items():
                if recorded.get(shard, (0, ""))[1] != seen.data_version or shard in stalled:
                    newest = seen.newest_change.isoformat() if seen.newest_change else ""
                    metadata: dict[str, int | str] = {
                        "records": seen.records,
                        "newest_change": newest,
                    }
                    events += source_version_events(contract, shard, seen.data_version, metadata)
                    behind.add(shard)
            waiting, observed_at = waiting_changes(contract, ctx), now
        lag = judge_freshness(contract, ctx, [(s, at) for s, at in waiting if s in behind])
        renew = observed_at == now or cursor.in_sync is not True
        if observed_at == now or cursor.in_sync != lag.in_sync:
            events += judgment_events(contract, lag, now, renew=renew)
        return dg.SensorResult(
            asset_events=events,
            cursor=SourceCursor(observed_at, waiting, lag.in_sync).to_json(),
        )

    return _sensor
