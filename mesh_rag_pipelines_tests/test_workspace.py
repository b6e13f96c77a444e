"""The workspace serves each domain as its own code location, each in its own process: one
domain's broken contract fails only that domain's location, and the others load and run."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from dagster._core.test_utils import instance_for_test
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import WorkspaceFileTarget
from sqlalchemy import Engine

from mesh_rag_pipelines.contracts import load_contracts
from mesh_rag_pipelines.contracts.loader import PRODUCTS_DIR
from mesh_rag_pipelines.orchestration.jobs import sync_job_name
from mesh_rag_pipelines.samples import seed_sources
from mesh_rag_pipelines.store.health import index_health
from mesh_rag_pipelines_tests.helpers import source_ctx

WORKSPACE = Path(__file__).resolve().parents[1] / "workspace.yaml"


def _locations() -> dict[str, tuple[set[str], str | None]]:
    """Per location of the workspace: its asset keys' products, and its load error if any."""
    found: dict[str, tuple[set[str], str | None]] = {}
    with instance_for_test() as instance:
        target = WorkspaceFileTarget(paths=[str(WORKSPACE)])
        with WorkspaceProcessContext(instance, target) as process_context:
            workspace = process_context.create_request_context()
            for name, entry in workspace.get_code_location_entries().items():
                products: set[str] = set()
                if entry.code_location is not None:
                    for repository in entry.code_location.get_repositories().values():
                        for node in repository.get_asset_node_snaps():
                            products.add(node.asset_key.path[0])
                error = entry.load_error.to_string() if entry.load_error else None
                found[name] = (products, error)
    return found


def test_each_domain_is_its_own_code_location(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MESH_RAG_CONTRACTS_DIR", str(PRODUCTS_DIR))
    locations = _locations()
    assert {name: products for name, (products, _) in locations.items()} == {
        "commerce": {"catalog_products"},
        "customer_support": {"support_tickets"},
        "people": {"hr_policies"},
    }
    assert all(error is None for _, error in locations.values())


def test_a_broken_contract_fails_only_its_own_domain(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    database_url: str,
    engine: Engine,
    s3,  # type: ignore[no-untyped-def]
    s3_endpoint: str,
) -> None:
    products = tmp_path / "products"
    shutil.copytree(PRODUCTS_DIR, products)
    broken = products / "people" / "hr_policies" / "defs.yaml"
    broken.write_text(broken.read_text().replace("max_words: 180", "max_words: lots"))
    monkeypatch.setenv("MESH_RAG_CONTRACTS_DIR", str(products))
    monkeypatch.setenv("MESH_RAG_DATABASE_URL", database_url)
    monkeypatch.setenv("MESH_RAG_S3_ENDPOINT_URL", s3_endpoint)

    locations = _locations()
    assert locations["commerce"] == ({"catalog_products"}, None)
    assert locations["customer_support"] == ({"support_tickets"}, None)
    people_products, people_error = locations["people"]
    assert people_products == set()
    assert people_error is not None
    assert "hr_policies/defs.yaml" in people_error and "chunking.max_words" in people_error

    from mesh_rag_pipelines import locations as domain_locations

    (catalog,) = load_contracts(products / "commerce")
    seed_sources([catalog], source_ctx(engine, s3))
    job = domain_locations.commerce.resolve_job_def(sync_job_name(catalog))
    with instance_for_test() as instance:
        for shard in job.partitions_def.get_partition_keys():  # type: ignore[union-attr]
            assert job.execute_in_process(partition_key=shard, instance=instance).success
    health = index_health(engine, catalog.name)
    assert health is not None and health.consistent and health.rows == health.expected_rows > 0
