"""The code location: everything is generated from the contracts in the products folder."""

import dagster as dg

from mesh_rag_pipelines import settings
from mesh_rag_pipelines.contracts import load_contracts
from mesh_rag_pipelines.defs.assets import embeddings_key, product_assets
from mesh_rag_pipelines.defs.automation import product_schedules, product_sensors
from mesh_rag_pipelines.defs.checks import product_checks
from mesh_rag_pipelines.defs.erasure import forget_job
from mesh_rag_pipelines.defs.jobs import build_all_job, product_job, validate_releases_job
from mesh_rag_pipelines.defs.releases import release_asset, release_gate, release_job
from mesh_rag_pipelines.defs.resources import default_resources


@dg.definitions
def defs() -> dg.Definitions:
    contracts = load_contracts(settings.contracts_dir())
    sla = {embeddings_key(c): c.freshness.sla_timedelta for c in contracts}
    definitions = dg.Definitions(
        assets=[
            *[asset for c in contracts for asset in product_assets(c)],
            *[release_asset(c) for c in contracts],
        ],
        asset_checks=[
            *[check for c in contracts for check in product_checks(c)],
            *[release_gate(c) for c in contracts],
        ],
        jobs=[
            build_all_job(contracts),
            validate_releases_job(contracts),
            *[product_job(c) for c in contracts],
            *[release_job(c) for c in contracts],
            *[forget_job(c) for c in contracts],
        ],
        sensors=[sensor for c in contracts for sensor in product_sensors(c)],
        schedules=[schedule for c in contracts for schedule in product_schedules(c)],
        resources=default_resources(),
        # A run is one shard; its steps share one process, so the model loads once per run.
        executor=dg.in_process_executor,
    )
    # One freshness policy per index, from its contract's SLA, applied in one place.
    return definitions.map_asset_specs(
        func=lambda spec: (
            spec.replace_attributes(
                freshness_policy=dg.FreshnessPolicy.time_window(fail_window=sla[spec.key])
            )
            if spec.key in sla
            else spec
        )
    )
