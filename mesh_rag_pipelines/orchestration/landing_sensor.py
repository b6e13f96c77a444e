"""The sensor of an S3 landing zone: each new object is an event, read once by the shards it
touches. The sensor requests those shards' runs itself, naming the objects: waiting for a
declarative-automation tick would add to the landing-to-query lag. It also records the touched
shards' new source versions, and judges on every tick whether the index is in sync.

Its cursor keeps every key and etag seen within 15 minutes of the newest, so objects written in
the same second, or listed late, are reported exactly once (see sources/landing_cursor.py).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

import dagster as dg

from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.orchestration.freshness import judgment_events
from mesh_rag_pipelines.orchestration.jobs import sync_job_name
from mesh_rag_pipelines.orchestration.partitions import shard_key
from mesh_rag_pipelines.orchestration.resources import IndexStore, LandingZone, source_context
from mesh_rag_pipelines.orchestration.source_versions import source_version_events
from mesh_rag_pipelines.pipeline import judge_freshness
from mesh_rag_pipelines.sources.base import SourceContext
from mesh_rag_pipelines.sources.landing_cursor import LandingCursor
from mesh_rag_pipelines.sources.s3_landing import LandedObject, S3LandingSource
from mesh_rag_pipelines.store.chunk_set import applied_objects

LANDING_OBJECTS_TAG = "mesh_rag/landing_objects"
# The sensor daemon runs sensors every 5 s at most; this lets it run this one on every pass.
LANDING_INTERVAL_SECONDS = 1
# Objects read per tick, so that a burst never pushes a tick past the sensor timeout.
MAX_OBJECTS_PER_TICK = 200
# While nothing changes, the in-sync signal is renewed this often.
RENEW_SECONDS = 60

Waiting = dict[str, tuple[str, list[int], datetime]]


@dataclass(frozen=True)
class LandingSensorCursor:
    """The landing cursor; every object handed to runs that a shard it touches has not applied
    yet (key -> etag, shards, LastModified): what waits in the source, for the freshness signal;
    and the last judgment: when, and whether the product was in sync."""

    landing: LandingCursor = field(default_factory=LandingCursor)
    waiting: Waiting = field(default_factory=dict)
    judged_at: datetime | None = None
    in_sync: bool | None = None

    def to_json(self) -> str:
        waiting = {k: [e, shards, at.isoformat()] for k, (e, shards, at) in self.waiting.items()}
        judged = self.judged_at.isoformat() if self.judged_at else None
        return json.dumps(
            {
                "landing": self.landing.to_dict(),
                "waiting": waiting,
                "judged_at": judged,
                "in_sync": self.in_sync,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str | None) -> LandingSensorCursor:
        if not text:
            return cls()
        raw = json.loads(text)
        waiting = {
            key: (etag, list(shards), datetime.fromisoformat(at))
            for key, (etag, shards, at) in raw["waiting"].items()
        }
        judged = datetime.fromisoformat(raw["judged_at"]) if raw.get("judged_at") else None
        return cls(LandingCursor.from_dict(raw["landing"]), waiting, judged, raw.get("in_sync"))

    def renewal_due(self, now: datetime) -> bool:
        return self.judged_at is None or (now - self.judged_at).total_seconds() >= RENEW_SECONDS


def _landing_run_request(shard: int, objects: list[LandedObject], digest: str) -> dg.RunRequest:
    """The run key is the digest of the objects: the cursor never reports an object twice, so
    it is unique per tick and shard, and a retried tick maps to the run it already launched."""
    return dg.RunRequest(
        partition_key=shard_key(shard),
        run_key=f"{shard_key(shard)}-{digest}",
        tags={LANDING_OBJECTS_TAG: json.dumps([o.key for o in objects])},
    )


def _digest(objects: list[LandedObject]) -> str:
    identity = "\n".join(f"{o.key}\t{o.etag}" for o in objects)
    return hashlib.sha256(identity.encode()).hexdigest()[:16]


def _still_waiting(contract: DataProductContract, ctx: SourceContext, waiting: Waiting) -> Waiting:
    shards = {shard for _, touched, _ in waiting.values() for shard in touched}
    ledgers = {shard: applied_objects(ctx.engine, contract.name, shard) for shard in shards}
    return {
        key: (etag, touched, at)
        for key, (etag, touched, at) in waiting.items()
        if any((key, etag) not in ledgers[shard] for shard in touched)
    }


def landing_sensor(
    contract: DataProductContract,
    *,
    page_size: int = 1000,
    max_objects: int = MAX_OBJECTS_PER_TICK,
) -> dg.SensorDefinition:
    source: S3LandingSource = contract.source  # type: ignore[assignment]  # events, not polled

    @dg.sensor(
        name=f"{contract.name}_landing_sensor",
        job_name=sync_job_name(contract),
        minimum_interval_seconds=LANDING_INTERVAL_SECONDS,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"New change files under s3://{source.bucket}/{source.prefix} -> one "
            f"{sync_job_name(contract)} run per shard their events touch; also records them "
            "as the source's per-shard data versions, and judges whether the index is in sync."
        ),
    )
    def _sensor(
        context: dg.SensorEvaluationContext, index_store: IndexStore, landing_zone: LandingZone
    ) -> dg.SensorResult:
        now = datetime.now(UTC)
        ctx = source_context(contract, index_store, landing_zone)
        cursor = LandingSensorCursor.from_json(context.cursor)
        applied = {
            shard: applied_objects(ctx.engine, contract.name, shard)
            for shard in range(contract.shards)
        }
        by_shard, landing = source.pending_objects(
            contract, ctx, cursor.landing, applied, page_size=page_size, limit=max_objects
        )
        requests: list[dg.RunRequest] = []
        events: list = []
        waiting = dict(cursor.waiting)
        for shard, objects in by_shard.items():
            digest = _digest(objects)
            requests.append(_landing_run_request(shard, objects, digest))
            events += source_version_events(contract, shard, digest, {"objects": len(objects)})
            for landed in objects:
                _, touched, _ = waiting.get(landed.key, (landed.etag, [], landed.last_modified))
                waiting[landed.key] = (landed.etag, sorted({*touched, shard}), landed.last_modified)
        waiting = _still_waiting(contract, ctx, waiting)
        pairs = [(shard, at) for _, shards, at in waiting.values() for shard in shards]
        lag = judge_freshness(contract, ctx, pairs)
        judged_at = cursor.judged_at
        renew = cursor.renewal_due(now)
        if renew or lag.in_sync != cursor.in_sync:
            events += judgment_events(contract, lag, now, renew=renew or not cursor.in_sync)
            judged_at = now
        return dg.SensorResult(
            run_requests=requests,
            asset_events=events,
            skip_reason=None if requests else f"no new change files for {contract.name}",
            cursor=LandingSensorCursor(landing, waiting, judged_at, lag.in_sync).to_json(),
        )

    return _sensor
