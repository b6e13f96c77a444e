"""What runs by itself, and why. Everything here ships running: sensors only read to decide,
and the runs they cause are idempotent, so a duplicate costs time, not data.

- Each product's sensor watches its source: a polled source's sensor (source_sensor.py) records
  per-shard data versions, and the index assets' automation condition syncs the shards that
  changed; a landing zone's sensor (landing_sensor.py) requests those runs itself.
- Each code location's automation condition sensor evaluates the conditions of conditions.py:
  sync a shard when its source changed (or is still behind), re-sync every shard when the
  contract's chunker, model or index parameters change (a release backfill: the new index
  version fills beside the live one), and give the product-wide verdict on `<product>/release`
  once a sync or a backfill is done, at most once per window.
"""

from __future__ import annotations

import dagster as dg

from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.orchestration.landing_sensor import landing_sensor
from mesh_rag_pipelines.orchestration.source_sensor import source_sensor

AUTOMATION_SENSOR = "default_automation_condition_sensor"
# How often conditions are evaluated; a polled change waits at most this long after its look.
AUTOMATION_INTERVAL_SECONDS = 5


def automation_sensor() -> dg.AutomationConditionSensorDefinition:
    """One per code location, running from the start (Dagster's default one ships stopped)."""
    return dg.AutomationConditionSensorDefinition(
        AUTOMATION_SENSOR,
        target=dg.AssetSelection.all(),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=AUTOMATION_INTERVAL_SECONDS,
        emit_backfills=False,
        description=(
            "Syncs source shards that changed, backfills every shard for a new index version, "
            "and gives each product's verdict after its runs."
        ),
    )


def product_sensors(contract: DataProductContract) -> list[dg.SensorDefinition]:
    return [source_sensor(contract) if contract.source.polled else landing_sensor(contract)]
