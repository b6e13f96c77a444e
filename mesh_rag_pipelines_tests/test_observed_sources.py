"""Observed sources and declarative automation: an edit in each source kind changes the data
version of exactly its shard, and only that shard is synced."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from sqlalchemy import Engine, text

from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.orchestration.assets import chunks_key, embeddings_key, source_key
from mesh_rag_pipelines.orchestration.automation import product_sensors
from mesh_rag_pipelines.orchestration.freshness import in_sync_key
from mesh_rag_pipelines.orchestration.jobs import sync_job_name
from mesh_rag_pipelines.orchestration.landing_sensor import landing_sensor
from mesh_rag_pipelines.orchestration.product import product_definitions
from mesh_rag_pipelines.orchestration.resources import IndexStore, LandingZone
from mesh_rag_pipelines.orchestration.source_sensor import SourceCursor, source_sensor
from mesh_rag_pipelines.orchestration.source_versions import DATA_VERSION_TAG
from mesh_rag_pipelines.samples import seed_sources
from mesh_rag_pipelines_tests.helpers import source_ctx

ALL_SHARDS = {"00", "01", "02", "03"}


@pytest.fixture
def environment(
    monkeypatch: pytest.MonkeyPatch, database_url: str, s3_endpoint: str, products_dir: Path
) -> None:
    monkeypatch.setenv("MESH_RAG_DATABASE_URL", database_url)
    monkeypatch.setenv("MESH_RAG_S3_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("MESH_RAG_CONTRACTS_DIR", str(products_dir))


def _resources(database_url: str, s3_endpoint: str) -> dict[str, Any]:
    return {
        "index_store": IndexStore(database_url=database_url),
        "landing_zone": LandingZone(endpoint_url=s3_endpoint),
    }


def _look(
    sensor: dg.SensorDefinition,
    cursor: str | None,
    instance: dg.DagsterInstance,
    resources: dict[str, Any],
) -> dg.SensorResult:
    """One tick, its events recorded in the instance as the sensor daemon records them."""
    context = dg.build_sensor_context(cursor=cursor, resources=resources, instance=instance)
    result = sensor(context)
    assert isinstance(result, dg.SensorResult), result
    for event in result.asset_events:
        instance.report_runless_asset_event(event)  # type: ignore[arg-type]
    return result


def _versions(result: dg.SensorResult, contract: DataProductContract) -> dict[str, str]:
    return {
        event.partition or "": event.tags[DATA_VERSION_TAG]
        for event in result.asset_events
        if isinstance(event, dg.AssetMaterialization) and event.asset_key == source_key(contract)
    }


def _overdue(cursor: str | None) -> str:
    """The cursor as if the source was last looked at a day ago: the poll cron is due."""
    seen = SourceCursor.from_json(cursor)
    return SourceCursor(datetime.now(UTC) - timedelta(days=1), seen.waiting, seen.in_sync).to_json()


def _requested(
    definitions: dg.Definitions,
    contract: DataProductContract,
    instance: dg.DagsterInstance,
    cursor: Any,
) -> tuple[dict[str, set[str]], Any]:
    """The shards of chunks and embeddings one automation tick requests, and its cursor."""
    result = dg.evaluate_automation_conditions(defs=definitions, instance=instance, cursor=cursor)
    requested = {
        key.to_user_string(): set(result.get_requested_partitions(key))
        for key in (chunks_key(contract), embeddings_key(contract))
    }
    return {k: v for k, v in requested.items() if v}, result.cursor


def _edit_policy(contract: DataProductContract, engine: Engine) -> str:
    travel = contract.resolve_path(contract.source.path or "") / "travel.md"
    travel.write_text(travel.read_text() + "\nTrains are preferred for trips under four hours.\n")
    return "travel.md"


def _remove_policy(contract: DataProductContract, engine: Engine) -> str:
    (contract.resolve_path(contract.source.path or "") / "whistleblowing.md").unlink()
    return "whistleblowing.md"


def _update_row(contract: DataProductContract, engine: Engine) -> str:
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE sample_sources.catalog_products SET revision = revision + 1, "
                "updated_at = now(), description = description || ' Now in green.' "
                "WHERE sku = 'NW-TNT-0004'"
            )
        )
    return "NW-TNT-0004"


def _delete_row(contract: DataProductContract, engine: Engine) -> str:
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM sample_sources.catalog_products WHERE sku = 'NW-TNT-0009'"))
    return "NW-TNT-0009"


@pytest.mark.usefixtures("environment")
@pytest.mark.parametrize(
    ("product", "edit"),
    [
        ("hr_policies", _edit_policy),
        ("hr_policies", _remove_policy),
        ("catalog_products", _update_row),
        ("catalog_products", _delete_row),
    ],
)
def test_an_edit_changes_its_shards_data_version_and_only_that_shard_is_synced(
    contracts: dict[str, DataProductContract],
    database_url: str,
    s3_endpoint: str,
    engine: Engine,
    product: str,
    edit: Callable[[DataProductContract, Engine], str],
) -> None:
    contract = contracts[product]
    seed_sources([contract], source_ctx(engine, None))
    definitions = product_definitions(contract)
    resources = _resources(database_url, s3_endpoint)
    instance = dg.DagsterInstance.ephemeral()
    sensor = source_sensor(contract)

    first = _look(sensor, None, instance, resources)
    assert set(_versions(first, contract)) == ALL_SHARDS
    requested, cursor = _requested(definitions, contract, instance, None)
    job = definitions.resolve_job_def(sync_job_name(contract))
    for shard in sorted(ALL_SHARDS):
        assert job.execute_in_process(partition_key=shard, instance=instance).success
    requested, cursor = _requested(definitions, contract, instance, cursor)
    assert requested == {}

    # Nothing changed: the next look reports no new data version, and nothing is requested.
    quiet = _look(sensor, _overdue(first.cursor), instance, resources)
    assert _versions(quiet, contract) == {}
    requested, cursor = _requested(definitions, contract, instance, cursor)
    assert requested == {}

    doc_id = edit(contract, engine)
    shard = f"{contract.shard_of(doc_id):02d}"
    changed = _look(sensor, _overdue(quiet.cursor), instance, resources)
    assert set(_versions(changed, contract)) == {shard}
    assert _versions(changed, contract)[shard] != _versions(first, contract)[shard]
    requested, cursor = _requested(definitions, contract, instance, cursor)
    assert requested == {
        chunks_key(contract).to_user_string(): {shard},
        embeddings_key(contract).to_user_string(): {shard},
    }
    # The sensor saw the change waiting: the product is not in sync.
    in_sync = [e for e in changed.asset_events if e.asset_key == in_sync_key(contract)]
    assert [type(e) for e in in_sync] == [dg.AssetCheckEvaluation, dg.AssetObservation]
    assert [e.metadata["waiting_changes"].value for e in in_sync] == [1, 1]
    assert not in_sync[0].passed


@pytest.mark.usefixtures("environment")
def test_a_poll_cron_not_yet_due_skips_the_look(
    contracts: dict[str, DataProductContract], database_url: str, s3_endpoint: str
) -> None:
    contract = contracts["hr_policies"]
    instance = dg.DagsterInstance.ephemeral()
    resources = _resources(database_url, s3_endpoint)
    first = _look(source_sensor(contract), None, instance, resources)
    assert set(_versions(first, contract)) == ALL_SHARDS
    again = _look(source_sensor(contract), first.cursor, instance, resources)
    assert _versions(again, contract) == {}
    assert (
        SourceCursor.from_json(again.cursor).observed_at
        == SourceCursor.from_json(first.cursor).observed_at
    )


@pytest.mark.usefixtures("environment")
def test_a_landed_object_changes_the_version_of_the_shard_it_touches_and_requests_only_it(
    contracts: dict[str, DataProductContract],
    database_url: str,
    s3_endpoint: str,
    s3: Any,
) -> None:
    contract = contracts["support_tickets"]
    instance = dg.DagsterInstance.ephemeral()
    resources = _resources(database_url, s3_endpoint)
    sensor = landing_sensor(contract)
    warm = _look(sensor, None, instance, resources)
    event = (
        '{"op": "upsert", "id": "T-77", "version": 1, "updated_at": "2026-11-01T08:00:00Z", '
        '"data": {"ticket_id": "T-77", "subject": "Zipper", "body": "The zipper broke.", '
        '"status": "open", "priority": "low", "product_area": "tents"}}\n'
    )
    s3.put_object(
        Bucket=contract.source.bucket, Key=f"{contract.source.prefix}one.jsonl", Body=event
    )
    landed = _look(sensor, warm.cursor, instance, resources)
    shard = f"{contract.shard_of('T-77'):02d}"
    assert set(_versions(landed, contract)) == {shard}
    assert [r.partition_key for r in landed.run_requests or []] == [shard]


def test_each_product_has_one_sensor_of_its_source_kind(
    contracts: dict[str, DataProductContract],
) -> None:
    names = {name: [s.name for s in product_sensors(c)] for name, c in contracts.items()}
    assert names == {
        "catalog_products": ["catalog_products_source_sensor"],
        "hr_policies": ["hr_policies_source_sensor"],
        "support_tickets": ["support_tickets_landing_sensor"],
    }
