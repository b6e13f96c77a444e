"""The product's freshness signal, judged by Dagster's own freshness daemon: a quiet source
reads fresh for longer than the SLA, a change left waiting in the source reads failed once it
has waited longer than the SLA, and the signal passes again once the change is served."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster._core.test_utils import (  # the daemon's own test harness: no public equivalent
    create_test_daemon_workspace_context,
    freeze_time,
    instance_for_test,
)
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import ModuleTarget
from dagster._daemon.freshness import FreshnessDaemon
from sqlalchemy import Engine

from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.embedding import Embedder
from mesh_rag_pipelines.orchestration.freshness import in_sync_key
from mesh_rag_pipelines.orchestration.resources import IndexStore
from mesh_rag_pipelines.orchestration.source_sensor import source_sensor
from mesh_rag_pipelines.pipeline import SyncDeps, sync_shard
from mesh_rag_pipelines.store.index_writer import refresh_index
from mesh_rag_pipelines_tests.helpers import edited, source_ctx, sync_all

SLA = timedelta(minutes=15)


@pytest.fixture
def policies(
    monkeypatch: pytest.MonkeyPatch, database_url: str, s3_endpoint: str, products_dir: Path
) -> DataProductContract:
    for name in ("catalog_products", "support_tickets"):
        (products_dir / f"{name}.yaml").unlink()
    monkeypatch.setenv("MESH_RAG_DATABASE_URL", database_url)
    monkeypatch.setenv("MESH_RAG_S3_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("MESH_RAG_CONTRACTS_DIR", str(products_dir))
    return edited(products_dir, "hr_policies", "sla: 1d", "sla: 15m")


@pytest.fixture
def daemon_context(policies: DataProductContract) -> Iterator[tuple[Any, WorkspaceProcessContext]]:
    with instance_for_test() as instance:
        target = ModuleTarget(
            module_name="mesh_rag_pipelines.definitions",
            attribute=None,
            working_directory=None,
            location_name="hr",
        )
        with create_test_daemon_workspace_context(target, instance) as context:
            yield instance, context


def _look(
    contract: DataProductContract, instance: dg.DagsterInstance, database_url: str, at: datetime
) -> None:
    """One look by the product's sensor at time `at`, its events recorded as the daemon does."""
    with freeze_time(at):
        context = dg.build_sensor_context(
            resources={"index_store": IndexStore(database_url=database_url)}, instance=instance
        )
        result = source_sensor(contract)(context)
        assert isinstance(result, dg.SensorResult)
        for event in result.asset_events:
            instance.report_runless_asset_event(event)  # type: ignore[arg-type]


def _freshness(
    contract: DataProductContract,
    instance: dg.DagsterInstance,
    context: WorkspaceProcessContext,
    at: datetime,
) -> str:
    with freeze_time(at):
        list(FreshnessDaemon().run_iteration(context))  # type: ignore[arg-type]
    record = instance.get_freshness_state_records([in_sync_key(contract)])[in_sync_key(contract)]
    return record.freshness_state.value


def test_a_quiet_source_reads_fresh_and_a_change_waiting_longer_than_the_sla_reads_failed(
    policies: DataProductContract,
    daemon_context: tuple[Any, WorkspaceProcessContext],
    database_url: str,
    engine: Engine,
    minilm: Embedder,
) -> None:
    instance, context = daemon_context
    access = source_ctx(engine)
    sync_all(policies, access, minilm)
    t0 = datetime.now(UTC)

    _look(policies, instance, database_url, t0)
    assert _freshness(policies, instance, context, t0) == "PASS"
    # No run for twice the SLA: nothing changed, so the product is fresh.
    _look(policies, instance, database_url, t0 + 2 * SLA)
    assert _freshness(policies, instance, context, t0 + 2 * SLA + timedelta(minutes=1)) == "PASS"

    # A policy edited and never read in: the sensor sees it waiting, the clock runs out.
    travel = policies.resolve_path(policies.source.path or "") / "travel.md"
    travel.write_text(travel.read_text() + "\nTrains are preferred for trips under four hours.\n")
    waiting_since = t0 + 2 * SLA + timedelta(minutes=2)
    _look(policies, instance, database_url, waiting_since)
    assert _freshness(policies, instance, context, waiting_since) == "PASS"
    late = waiting_since + SLA + timedelta(minutes=1)
    _look(policies, instance, database_url, late)
    assert _freshness(policies, instance, context, late) == "FAIL"

    # Served: the next look finds nothing waiting and the signal is green again.
    shard = policies.shard_of("travel.md")
    sync_shard(policies, shard, SyncDeps(access, minilm))
    refresh_index(engine, policies, shard, minilm)
    _look(policies, instance, database_url, late + timedelta(minutes=1))
    assert _freshness(policies, instance, context, late + timedelta(minutes=1)) == "PASS"
