"""Everything one data product contributes to Dagster, and the platform a code location adds
around a set of products. Both are built from contracts alone."""

import dagster as dg

from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.orchestration.assets import product_assets
from mesh_rag_pipelines.orchestration.automation import automation_sensor, product_sensors
from mesh_rag_pipelines.orchestration.erasure import forget_job
from mesh_rag_pipelines.orchestration.feedback import feedback_schedule
from mesh_rag_pipelines.orchestration.freshness import in_sync_check, in_sync_spec
from mesh_rag_pipelines.orchestration.jobs import product_job, sync_now_job, validate_releases_job
from mesh_rag_pipelines.orchestration.monitoring import serving_asset, serving_schedule
from mesh_rag_pipelines.orchestration.releases import release_asset, release_checks, release_job
from mesh_rag_pipelines.orchestration.resources import default_resources


def product_definitions(contract: DataProductContract) -> dg.Definitions:
    """One product's assets, checks, jobs, sensors and schedules, with the shared resources."""
    return dg.Definitions(
        assets=[
            *product_assets(contract),
            release_asset(contract),
            in_sync_spec(contract),
            serving_asset(contract),
        ],
        asset_checks=[*release_checks(contract), in_sync_check(contract)],
        jobs=[
            product_job(contract),
            sync_now_job(contract),
            release_job(contract),
            forget_job(contract),
        ],
        sensors=product_sensors(contract),
        schedules=[
            serving_schedule(contract),
            feedback_schedule(contract),  # with the `feedback_<product>` job it launches
        ],
        resources=default_resources(),
        # A run is one shard; its steps share one process, so the model loads once per run.
        executor=dg.in_process_executor,
    )


def platform_definitions(
    contracts: list[DataProductContract], domain: str | None = None
) -> dg.Definitions:
    """A code location of `contracts` (one domain's, or every product's): each product, and the
    location's automation. Every product's location has a job validating every release."""
    spanning = dg.Definitions(
        jobs=[validate_releases_job(contracts)] if contracts and domain is None else [],
        sensors=[automation_sensor()],
        resources=default_resources(),
        executor=dg.in_process_executor,
    )
    return dg.Definitions.merge(*[product_definitions(c) for c in contracts], spanning)
