"""Each product's generated sync job builds it, shard by shard, with its checks passing."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
from sqlalchemy import Engine

from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.definitions import defs
from mesh_rag_pipelines.orchestration.jobs import sync_job_name
from mesh_rag_pipelines.samples import seed_sources
from mesh_rag_pipelines.store.health import index_health
from mesh_rag_pipelines_tests.helpers import source_ctx


def _run_every_shard(
    instance: dg.DagsterInstance, contracts: dict[str, DataProductContract]
) -> dict[str, int]:
    """texts_embedded per product over one run per shard of each product."""
    definitions = defs()
    embedded: dict[str, int] = {}
    for contract in contracts.values():
        embedded.update(_run_product(definitions, contract, instance))
    return embedded


def _run_product(
    definitions: dg.Definitions, contract: DataProductContract, instance: dg.DagsterInstance
) -> dict[str, int]:
    job = definitions.resolve_job_def(sync_job_name(contract))
    keys = job.partitions_def.get_partition_keys()  # type: ignore[union-attr]
    assert len(keys) == contract.shards
    embedded: dict[str, int] = {}
    for key in keys:
        result = job.execute_in_process(partition_key=key, instance=instance)
        assert result.success
        for check in result.get_asset_check_evaluations():
            # Golden queries can only all hit once every shard is in.
            if check.check_name != "golden_queries" or key == keys[-1]:
                assert check.passed, (key, check.asset_key, check.check_name, check.metadata)
        for event in result.get_asset_materialization_events():
            materialization = event.step_materialization_data.materialization
            if materialization.asset_key.path[-1] == "embeddings":
                product = materialization.asset_key.path[0]
                texts = materialization.metadata["texts_embedded"].value
                embedded[product] = embedded.get(product, 0) + int(texts)  # type: ignore[arg-type]
    return embedded


def test_sync_jobs_build_every_shard_and_rerun_as_a_no_op(
    monkeypatch: pytest.MonkeyPatch,
    database_url: str,
    engine: Engine,
    s3_endpoint: str,
    s3,  # type: ignore[no-untyped-def]
    products_dir: Path,
    contracts: dict[str, DataProductContract],
) -> None:
    monkeypatch.setenv("MESH_RAG_DATABASE_URL", database_url)
    monkeypatch.setenv("MESH_RAG_S3_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("MESH_RAG_CONTRACTS_DIR", str(products_dir))
    seed_sources(list(contracts.values()), source_ctx(engine, s3))
    instance = dg.DagsterInstance.ephemeral()

    first = _run_every_shard(instance, contracts)
    assert set(first) == set(contracts) and all(count > 50 for count in first.values())
    for contract in contracts.values():
        health = index_health(engine, contract.name)
        assert health is not None and health.consistent and health.rows == health.expected_rows

    assert _run_every_shard(instance, contracts) == dict.fromkeys(contracts, 0)
