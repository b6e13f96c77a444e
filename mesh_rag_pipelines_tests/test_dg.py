"""Data products as Dagster Components, through the `dg` command line: `dg list defs` shows what
the samples build, `dg check yaml` validates them, and a product scaffolded with `dg scaffold
defs` in a domain's own repository (YAML and an empty package) materializes end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.test_utils import instance_for_test
from sqlalchemy import Engine

from mesh_rag_pipelines.store.health import index_health
from mesh_rag_pipelines_tests.helpers import grant

REPOSITORY = Path(__file__).resolve().parents[1]
DG = Path(sys.executable).parent / "dg"
PRODUCTS = {"catalog_products", "hr_policies", "support_tickets"}


def _dg(*args: str, cwd: Path, pythonpath: Path | None = None) -> str:
    env = {**os.environ, "VIRTUAL_ENV": str(Path(sys.executable).parents[1])}
    if pythonpath:
        env["PYTHONPATH"] = str(pythonpath)
    done = subprocess.run(
        [str(DG), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_dg_lists_the_sample_products_definitions() -> None:
    listed = json.loads(_dg("list", "defs", "--json", cwd=REPOSITORY))
    assets = {asset["asset_key"] for asset in listed["assets"]}
    steps = ("source", "chunks", "embeddings", "release", "in_sync", "serving")
    assert assets == {f"{product}/{step}" for product in PRODUCTS for step in steps}
    jobs = {job["name"] for job in listed["jobs"]}
    for product in PRODUCTS:
        assert {f"sync_{product}", f"sync_now_{product}", f"release_{product}"} <= jobs
    assert {sensor["name"] for sensor in listed["sensors"]} == {
        "catalog_products_source_sensor",
        "default_automation_condition_sensor",
        "hr_policies_source_sensor",
        "support_tickets_landing_sensor",
    }
    checks = {check["key"] for check in listed["asset_checks"]}
    assert {
        "support_tickets/embeddings:index_matches_source",
        "support_tickets/release:release_gate",
    } <= checks
    conditions = {
        asset["asset_key"]: str(asset.get("automation_condition"))
        for asset in listed["assets"]
        if asset["asset_key"].endswith("/embeddings")
    }
    # Polled sources sync on a source change; every product backfills a new index version.
    assert "source shard changed" in conditions["hr_policies/embeddings"]
    assert "source shard changed" not in conditions["support_tickets/embeddings"]
    assert all("backfill every shard" in condition for condition in conditions.values())


def test_dg_check_yaml_accepts_the_samples() -> None:
    assert "validated successfully" in _dg("check", "yaml", cwd=REPOSITORY)


PROJECT = """\
[project]
name = "people-domain"
version = "0.1.0"
requires-python = ">=3.11"
dependencies = ["mesh-rag-pipelines"]

[tool.dg]
directory_type = "project"

[tool.dg.project]
root_module = "people_domain"
registry_modules = ["mesh_rag_pipelines.components"]
"""

DEFINITIONS = """\
from pathlib import Path

import dagster as dg


@dg.definitions
def defs() -> dg.Definitions:
    return dg.load_from_defs_folder(project_root=Path(__file__).parent.parent)
"""

POLICY = """\
---
title: {title}
---

# {title}

{body}
"""


@pytest.fixture
def domain_repository(tmp_path: Path) -> Path:
    """A domain team's repository as `create-dagster project` lays one out, with no products,
    and the platform policy granting the people domain the folders under its products."""
    root = tmp_path / "people-domain"
    (root / "people_domain" / "defs").mkdir(parents=True)
    (root / "pyproject.toml").write_text(PROJECT)
    (root / "people_domain" / "__init__.py").write_text("")
    (root / "people_domain" / "defs" / "__init__.py").write_text("")
    (root / "people_domain" / "definitions.py").write_text(DEFINITIONS)
    # The platform's policy, found above the products: the people domain reads its own folders.
    grant(root, "people", folders=["people_domain/defs/people"])
    return root


def test_a_scaffolded_product_materializes_end_to_end(
    monkeypatch: pytest.MonkeyPatch, domain_repository: Path, database_url: str, engine: Engine
) -> None:
    _dg(
        "scaffold",
        "defs",
        "mesh_rag_pipelines.components.DataProduct",
        "people/onboarding",
        cwd=domain_repository,
        pythonpath=domain_repository,
    )
    product = domain_repository / "people_domain" / "defs" / "people" / "onboarding"
    assert (
        (product / "defs.yaml")
        .read_text()
        .startswith(
            "type: mesh_rag_pipelines.components.DataProduct\nattributes:\n  name: onboarding\n"
        )
    )
    for title, body in [
        ("First Day", "Collect your laptop from IT at nine and meet your onboarding buddy."),
        ("First Week", "Finish the security training and book a call with each team lead."),
        ("First Month", "Agree on goals for your first quarter with your manager."),
    ]:
        name = title.lower().replace(" ", "-") + ".md"
        (product / "documents" / name).write_text(POLICY.format(title=title, body=body))

    assert "validated successfully" in _dg(
        "check", "yaml", cwd=domain_repository, pythonpath=domain_repository
    )
    listed = json.loads(
        _dg("list", "defs", "--json", cwd=domain_repository, pythonpath=domain_repository)
    )
    assert {asset["asset_key"] for asset in listed["assets"]} == {
        f"onboarding/{step}"
        for step in ("source", "chunks", "embeddings", "release", "in_sync", "serving")
    }

    monkeypatch.setenv("MESH_RAG_DATABASE_URL", database_url)
    monkeypatch.syspath_prepend(str(domain_repository))
    definitions = dg.load_from_defs_folder(project_root=domain_repository)
    job = definitions.resolve_job_def("sync_onboarding")
    with instance_for_test() as instance:
        for shard in job.partitions_def.get_partition_keys():  # type: ignore[union-attr]
            assert job.execute_in_process(partition_key=shard, instance=instance).success
    health = index_health(engine, "onboarding")
    assert health is not None and health.consistent
    assert health.live_documents == 3 and health.rows == health.expected_rows >= 3
