"""Schedules of polled sources: a tick requests runs for exactly the shards with changes."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg
import pytest
from sqlalchemy import Engine, text

from mesh_rag_pipelines import settings
from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.defs.automation import poll_schedule, product_schedules
from mesh_rag_pipelines.defs.resources import IndexStore
from mesh_rag_pipelines.pipeline import SourceAccess, refresh_chunk_set
from mesh_rag_pipelines.samples import seed_sources
from mesh_rag_pipelines.sources.documents import shard_of

TICK = datetime(2025, 3, 1, 13, 0, tzinfo=UTC)


def _tick(contract: DataProductContract, database_url: str) -> list[dg.RunRequest] | dg.SkipReason:
    context = dg.build_schedule_context(
        resources={"index_store": IndexStore(database_url=database_url)},
        scheduled_execution_time=TICK,
    )
    return poll_schedule(contract)(context)


def _requested(result: list[dg.RunRequest] | dg.SkipReason) -> list[tuple[str | None, str]]:
    assert isinstance(result, list), result
    return [(request.partition_key, request.run_key or "") for request in result]


def _build_chunk_sets(contract: DataProductContract, engine: Engine) -> None:
    for shard in range(settings.SHARD_COUNT):
        refresh_chunk_set(contract, shard, SourceAccess(engine))


def test_hr_schedule_requests_only_the_shard_of_an_edited_policy(
    contracts: dict[str, DataProductContract], database_url: str, engine: Engine
) -> None:
    contract = contracts["hr_policies"]
    _build_chunk_sets(contract, engine)
    assert isinstance(_tick(contract, database_url), dg.SkipReason)

    travel = contract.resolve_path(contract.source.path or "") / "travel.md"
    travel.write_text(travel.read_text() + "\nTrains are preferred for trips under four hours.\n")
    shard = f"{shard_of('travel'):02d}"
    assert _requested(_tick(contract, database_url)) == [(shard, shard)]


def test_hr_schedule_requests_the_shard_of_a_removed_policy(
    contracts: dict[str, DataProductContract], database_url: str, engine: Engine
) -> None:
    contract = contracts["hr_policies"]
    _build_chunk_sets(contract, engine)
    (contract.resolve_path(contract.source.path or "") / "whistleblowing.md").unlink()
    shard = f"{shard_of('whistleblowing'):02d}"
    assert _requested(_tick(contract, database_url)) == [(shard, shard)]


def test_table_schedule_requests_only_the_shard_of_an_updated_row(
    contracts: dict[str, DataProductContract], database_url: str, engine: Engine
) -> None:
    contract = contracts["catalog_products"]
    seed_sources([contract], engine, None)
    _build_chunk_sets(contract, engine)
    assert isinstance(_tick(contract, database_url), dg.SkipReason)

    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE sample_sources.catalog_products SET revision = revision + 1, "
                "updated_at = now(), description = description || ' Now in green.' "
                "WHERE sku = 'NW-TNT-0004'"
            )
        )
    shard = f"{shard_of('NW-TNT-0004'):02d}"
    assert _requested(_tick(contract, database_url)) == [(shard, shard)]


@pytest.mark.parametrize(
    ("product", "cron"),
    [("hr_policies", "0 * * * *"), ("catalog_products", "*/10 * * * *"), ("support_tickets", None)],
)
def test_polled_products_get_a_running_schedule_on_their_contract_cadence(
    contracts: dict[str, DataProductContract], product: str, cron: str | None
) -> None:
    schedules = product_schedules(contracts[product])
    assert [(s.cron_schedule, s.default_status, s.job_name) for s in schedules] == (
        [(cron, dg.DefaultScheduleStatus.RUNNING, f"sync_{product}")] if cron else []
    )
