"""`mesh-rag` as a user runs it: a second build with nothing changed embeds nothing and never
loads the model, its runs are recorded in one local Dagster instance outside the repository
whatever the working directory, and the platform view lists every product's state."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
from sqlalchemy import Engine

from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.samples import seed_sources
from mesh_rag_pipelines.settings import Settings
from mesh_rag_pipelines_tests.helpers import source_ctx

MESH_RAG = str(Path(sys.executable).parent / "mesh-rag")
REPOSITORY = Path(__file__).resolve().parents[1]


def _mesh_rag(*args: str, env: dict[str, str], cwd: Path) -> str:
    done = subprocess.run(
        [MESH_RAG, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout


def test_a_no_op_build_embeds_nothing_and_loads_no_model(
    tmp_path: Path,
    database_url: str,
    engine: Engine,
    s3,  # type: ignore[no-untyped-def]
    s3_endpoint: str,
    products_dir: Path,
    contracts: dict[str, DataProductContract],
) -> None:
    for name in ("catalog_products", "support_tickets"):
        (products_dir / f"{name}.yaml").unlink()
    seed_sources([contracts["hr_policies"]], source_ctx(engine, s3))
    home = tmp_path / "home"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # The local profile, with no S3 endpoint: a product without a landing zone starts no S3.
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DAGSTER_HOME", "MESH_RAG_HOME", "MESH_RAG_S3_ENDPOINT_URL")
    }
    env.update(
        MESH_RAG_PROFILE="local",
        MESH_RAG_HOME=str(home),
        MESH_RAG_DATABASE_URL=database_url,
        MESH_RAG_CONTRACTS_DIR=str(products_dir),
    )
    before = set(REPOSITORY.iterdir())
    _mesh_rag("build", env=env, cwd=elsewhere)
    second = _mesh_rag("build", env=env, cwd=REPOSITORY)
    assert "hr_policies: index matches its source" in second
    assert set(REPOSITORY.iterdir()) == before
    assert list(elsewhere.iterdir()) == []

    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        key = dg.AssetKey(["hr_policies", "embeddings"])
        records = instance.fetch_materializations(key, limit=100).records
        runs = {record.run_id for record in records}
        assert len(records) == 8 and len(runs) == 8
        assert {r.asset_materialization.partition for r in records} == {"00", "01", "02", "03"}
        by_age = sorted(records, key=lambda record: record.storage_id)
        first_build, second_build = by_age[:4], by_age[4:]
        metadata = [r.asset_materialization.metadata for r in second_build]  # type: ignore[union-attr]
        assert [m["texts_embedded"].value for m in metadata] == [0, 0, 0, 0]
        assert [m["model_loaded"].value for m in metadata] == [False] * 4
        assert [m["model_load_seconds"].value for m in metadata] == [0.0] * 4
        loaded = [
            r.asset_materialization.metadata["model_loaded"].value  # type: ignore[union-attr]
            for r in first_build
        ]
        assert loaded.count(True) == 1  # one process, one load, by the first shard's run

    listed = json.loads(_mesh_rag("products", "--json", env=env, cwd=elsewhere))
    assert [(row["product"], row["in_sync"], row["waiting_changes"]) for row in listed] == [
        ("hr_policies", True, 0)
    ]
    assert listed[0]["live_version"].startswith("hr_policies")
    assert sorted(path.name for path in home.iterdir()) == ["dagster"]


def test_the_local_home_does_not_depend_on_the_working_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("MESH_RAG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    homes = set()
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        monkeypatch.chdir(tmp_path / folder)
        homes.add(Settings.from_env().home)
    assert homes == {tmp_path / "user" / ".mesh_rag"}
