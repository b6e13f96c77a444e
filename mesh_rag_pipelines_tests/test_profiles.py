"""Embedded services start only in the explicit local profile: elsewhere a process without a
store URL fails at start naming MESH_RAG_DATABASE_URL, and starts nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

MESH_RAG = str(Path(sys.executable).parent / "mesh-rag")
STARTS = [
    [MESH_RAG, "products"],
    [MESH_RAG, "build", "--product", "hr_policies"],
    # A code location, as a code server or run worker loads it.
    [sys.executable, "-c", "import mesh_rag_pipelines.definitions as d; d.defs()"],
]


def _postgres_processes() -> set[int]:
    return {p.pid for p in psutil.process_iter(["name"]) if p.info["name"] == "postgres"}


@pytest.mark.parametrize("command", STARTS, ids=["cli-products", "cli-build", "code-location"])
def test_without_the_local_profile_a_missing_store_url_fails_at_start(
    tmp_path: Path, command: list[str]
) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("MESH_RAG_PROFILE", "MESH_RAG_DATABASE_URL", "MESH_RAG_S3_ENDPOINT_URL")
    }
    env.update(MESH_RAG_HOME=str(tmp_path / "home"), DAGSTER_HOME=str(tmp_path))
    before = _postgres_processes()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "MESH_RAG_DATABASE_URL is not set" in done.stdout + done.stderr
    home = tmp_path / "home"
    assert not (home / "pg").exists() and not (home / "s3.json").exists()
    assert _postgres_processes() <= before
