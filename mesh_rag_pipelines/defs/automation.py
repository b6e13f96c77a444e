"""Sensors and schedules, from the contracts: each asks its source where there is work and
requests a `sync_<product>` run for exactly those shards.

Both only read (the landing zone, the source, the ledger and document state), so they ship
running; the runs they request are idempotent, so a duplicate request costs time, not data.
"""

from __future__ import annotations

import hashlib
import json

import dagster as dg

from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.defs.jobs import sync_job_name
from mesh_rag_pipelines.defs.partitions import shard_key
from mesh_rag_pipelines.defs.resources import IndexStore, LandingZone
from mesh_rag_pipelines.pipeline import (
    SourceAccess,
    pending_landed_objects,
    shards_with_pending_changes,
)
from mesh_rag_pipelines.sources.landing_cursor import LandingCursor
from mesh_rag_pipelines.sources.s3_landing import LandedObject

LANDING_OBJECTS_TAG = "mesh_rag/landing_objects"
# Listing a prefix is cheap, and the tick interval is most of the landing-to-query lag.
LANDING_INTERVAL_SECONDS = 5
# Objects read per tick, so that a burst never pushes a tick past the sensor timeout.
MAX_OBJECTS_PER_TICK = 200


def _landing_run_request(shard: int, objects: list[LandedObject]) -> dg.RunRequest:
    """The run key is a digest of the objects: the cursor never reports an object twice, so it
    is unique per tick and shard, and a retried tick maps to the run it already launched."""
    identity = "\n".join(f"{o.key}\t{o.etag}" for o in objects)
    digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
    return dg.RunRequest(
        partition_key=shard_key(shard),
        run_key=f"{shard_key(shard)}-{digest}",
        tags={LANDING_OBJECTS_TAG: json.dumps([o.key for o in objects])},
    )


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
            f"{sync_job_name(contract)} run per shard their events touch."
        ),
    )
    def _sensor(
        context: dg.SensorEvaluationContext, index_store: IndexStore, landing_zone: LandingZone
    ) -> dg.SensorResult:
        access = SourceAccess(index_store.engine, landing_zone.client())
        by_shard, cursor = pending_landed_objects(
            contract,
            access,
            LandingCursor.from_json(context.cursor),
            page_size=page_size,
            limit=max_objects,
        )
        requests = [_landing_run_request(shard, objects) for shard, objects in by_shard.items()]
        return dg.SensorResult(
            run_requests=requests,
            skip_reason=None if requests else f"no new change files for {contract.name}",
            cursor=cursor.to_json(),
        )

    return _sensor


def poll_schedule(contract: DataProductContract) -> dg.ScheduleDefinition:
    cron = contract.freshness.poll_cron
    if cron is None:
        raise ValueError(f"product {contract.name}: freshness.poll_cron is needed for a schedule")

    @dg.schedule(
        cron_schedule=cron,
        name=f"{contract.name}_poll_schedule",
        job_name=sync_job_name(contract),
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=(
            f"Reads {contract.name}'s {contract.source.kind} source at {cron} (UTC) -> one "
            f"{sync_job_name(contract)} run per shard with changes."
        ),
    )
    def _schedule(
        context: dg.ScheduleEvaluationContext, index_store: IndexStore
    ) -> list[dg.RunRequest] | dg.SkipReason:
        shards = shards_with_pending_changes(contract, SourceAccess(index_store.engine))
        if not shards:
            return dg.SkipReason(f"no source changes for {contract.name}")
        # Schedules match run keys within one scheduled time, so the shard alone is unique.
        return [dg.RunRequest(partition_key=shard_key(s), run_key=shard_key(s)) for s in shards]

    return _schedule


def product_sensors(contract: DataProductContract) -> list[dg.SensorDefinition]:
    return [landing_sensor(contract)] if contract.source.kind == "s3_landing" else []


def product_schedules(contract: DataProductContract) -> list[dg.ScheduleDefinition]:
    polled = contract.source.kind != "s3_landing" and contract.freshness.poll_cron
    return [poll_schedule(contract)] if polled else []
