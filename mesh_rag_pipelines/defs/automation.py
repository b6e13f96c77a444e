"""Each product's sensor looks at its source and tells Dagster what it saw: per-shard data
versions of the source (so edits show as unsynced) and whether the index is in sync (the
product's freshness signal, see freshness.py).

A shard whose data version changed is reported as a runless materialization of the external
`<product>/source` asset, carrying the version: that is how Dagster records a change made
outside it, and what automation conditions react to (observations of an external asset do
not drive them, and observable source assets are a beta API).

A polled source (a table, a folder) has a state: its sensor observes it on the contract's
`poll_cron`, and the index assets' eager automation condition materializes exactly the shards
whose data version changed. A landing zone has events: each object is read once, by the shards
its events touch, and waiting for a declarative-automation tick (30 s) would add to the
landing-to-query lag; so its sensor requests those shards' runs itself, naming the objects.

Sensors only read (sources, the ledger, document state), so they ship running; the runs they
cause are idempotent, so a duplicate costs time, not data.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

import dagster as dg
from croniter import croniter

from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.defs.assets import source_key
from mesh_rag_pipelines.defs.freshness import in_sync_event
from mesh_rag_pipelines.defs.jobs import sync_job_name
from mesh_rag_pipelines.defs.partitions import shard_key
from mesh_rag_pipelines.defs.resources import IndexStore, LandingZone
from mesh_rag_pipelines.pipeline import SourceAccess, pending_landed_objects, source_lag
from mesh_rag_pipelines.sources.landing_cursor import LandingCursor
from mesh_rag_pipelines.sources.observe import observe_source
from mesh_rag_pipelines.sources.s3_landing import LandedObject
from mesh_rag_pipelines.store.chunk_set import applied_objects

LANDING_OBJECTS_TAG = "mesh_rag/landing_objects"
# The tag through which an observation carries a data version (Dagster's own name for it).
DATA_VERSION_TAG = "dagster/data_version"
# Listing a prefix is cheap, and the tick interval is most of the landing-to-query lag; the
# sensor daemon evaluates sensors every 5 s at most anyway.
LANDING_INTERVAL_SECONDS = 5
# How often a polled source's sensor wakes to see whether its poll_cron is due.
SOURCE_INTERVAL_SECONDS = 30
# Objects read per tick, so that a burst never pushes a tick past the sensor timeout.
MAX_OBJECTS_PER_TICK = 200
# How often the landing sensor judges whether the index is in sync (the SLA is minutes).
FRESHNESS_INTERVAL_SECONDS = 60


def _source_changed(
    contract: DataProductContract, shard: int, version: str, metadata: dict[str, int | str]
) -> dg.AssetMaterialization:
    """A shard of the source seen at a new `version`: its index shard is now unsynced."""
    return dg.AssetMaterialization(
        source_key(contract),
        partition=shard_key(shard),
        tags={DATA_VERSION_TAG: version},
        metadata=dict(metadata),
    )


# --- polled sources ------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceCursor:
    """When the source was last observed, and each shard's data version then."""

    observed_at: datetime | None = None
    versions: dict[str, str] = field(default_factory=dict)

    def due(self, cron: str | None, now: datetime) -> bool:
        if self.observed_at is None or cron is None:
            return True
        return croniter(cron, self.observed_at).get_next(datetime) <= now

    def to_json(self) -> str:
        observed = self.observed_at.isoformat() if self.observed_at else None
        return json.dumps({"observed_at": observed, "versions": self.versions}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> SourceCursor:
        if not text:
            return cls()
        raw = json.loads(text)
        observed = raw.get("observed_at")
        return cls(datetime.fromisoformat(observed) if observed else None, raw["versions"])


def source_sensor(contract: DataProductContract) -> dg.SensorDefinition:
    cron = contract.freshness.poll_cron

    @dg.sensor(
        name=f"{contract.name}_source_sensor",
        minimum_interval_seconds=SOURCE_INTERVAL_SECONDS,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"Observes {contract.name}'s {contract.source.kind} source "
            + (f"at {cron} (UTC)" if cron else f"every {SOURCE_INTERVAL_SECONDS} s")
            + ": per-shard data versions (edited shards show as unsynced and are synced by "
            "their automation condition) and whether the index is in sync."
        ),
    )
    def _sensor(
        context: dg.SensorEvaluationContext, index_store: IndexStore
    ) -> dg.SensorResult | dg.SkipReason:
        now = datetime.now(UTC)
        cursor = SourceCursor.from_json(context.cursor)
        if not cursor.due(cron, now):
            return dg.SkipReason(f"next look at {contract.name}'s source follows {cron}")
        access = SourceAccess(index_store.engine)
        table = access.table_engine(contract) if contract.source.kind == "postgres_table" else None
        observed = observe_source(contract, table)
        events: list[dg.AssetMaterialization | dg.AssetObservation] = [
            _source_changed(
                contract,
                shard,
                seen.data_version,
                {
                    "records": seen.records,
                    "newest_change": seen.newest_change.isoformat() if seen.newest_change else "",
                },
            )
            for shard, seen in observed.items()
            if cursor.versions.get(shard_key(shard)) != seen.data_version
        ]
        events.append(in_sync_event(contract, source_lag(contract, access), now))
        versions = {shard_key(s): seen.data_version for s, seen in observed.items()}
        return dg.SensorResult(asset_events=events, cursor=SourceCursor(now, versions).to_json())

    return _sensor


# --- the landing zone ----------------------------------------------------------------------


Waiting = dict[str, tuple[str, list[int], datetime]]


@dataclass(frozen=True)
class LandingSensorCursor:
    """The landing cursor; every object handed to runs that a shard it touches has not applied
    yet (key -> etag, shards, LastModified): what waits in the source, for the freshness signal;
    and when freshness was last judged."""

    landing: LandingCursor = field(default_factory=LandingCursor)
    waiting: Waiting = field(default_factory=dict)
    judged_at: datetime | None = None

    def to_json(self) -> str:
        waiting = {k: [e, shards, at.isoformat()] for k, (e, shards, at) in self.waiting.items()}
        judged = self.judged_at.isoformat() if self.judged_at else None
        return json.dumps(
            {"landing": self.landing.to_dict(), "waiting": waiting, "judged_at": judged},
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
        return cls(LandingCursor.from_dict(raw["landing"]), waiting, judged)

    def judge_due(self, now: datetime) -> bool:
        elapsed = (now - self.judged_at).total_seconds() if self.judged_at else None
        return elapsed is None or elapsed >= FRESHNESS_INTERVAL_SECONDS


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


def _still_waiting(
    contract: DataProductContract, access: SourceAccess, waiting: Waiting
) -> Waiting:
    shards = {shard for _, touched, _ in waiting.values() for shard in touched}
    ledgers = {shard: applied_objects(access.engine, contract.name, shard) for shard in shards}
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
    source = contract.source

    @dg.sensor(
        name=f"{contract.name}_landing_sensor",
        job_name=sync_job_name(contract),
        minimum_interval_seconds=LANDING_INTERVAL_SECONDS,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"New change files under s3://{source.bucket}/{source.prefix} -> one "
            f"{sync_job_name(contract)} run per shard their events touch; also reports them "
            "as the source's per-shard data versions, and whether the index is in sync."
        ),
    )
    def _sensor(
        context: dg.SensorEvaluationContext, index_store: IndexStore, landing_zone: LandingZone
    ) -> dg.SensorResult:
        now = datetime.now(UTC)
        access = SourceAccess(index_store.engine, landing_zone.get_client())
        cursor = LandingSensorCursor.from_json(context.cursor)
        by_shard, landing = pending_landed_objects(
            contract, access, cursor.landing, page_size=page_size, limit=max_objects
        )
        requests: list[dg.RunRequest] = []
        events: list[dg.AssetMaterialization | dg.AssetObservation] = []
        waiting = dict(cursor.waiting)
        for shard, objects in by_shard.items():
            digest = _digest(objects)
            requests.append(_landing_run_request(shard, objects, digest))
            events.append(_source_changed(contract, shard, digest, {"objects": len(objects)}))
            for landed in objects:
                _, touched, _ = waiting.get(landed.key, (landed.etag, [], landed.last_modified))
                waiting[landed.key] = (landed.etag, sorted({*touched, shard}), landed.last_modified)
        judged_at = cursor.judged_at
        if cursor.judge_due(now):
            waiting = _still_waiting(contract, access, waiting)
            pairs = [(shard, at) for _, shards, at in waiting.values() for shard in shards]
            events.append(in_sync_event(contract, source_lag(contract, access, pairs), now))
            judged_at = now
        return dg.SensorResult(
            run_requests=requests,
            asset_events=events,
            skip_reason=None if requests else f"no new change files for {contract.name}",
            cursor=LandingSensorCursor(landing, waiting, judged_at).to_json(),
        )

    return _sensor


def product_sensors(contract: DataProductContract) -> list[dg.SensorDefinition]:
    if contract.source.kind == "s3_landing":
        return [landing_sensor(contract)]
    return [source_sensor(contract)]
