"""A model change to another dimension runs the whole release through the command line (build,
validate, swap, rollback) while another process queries the product throughout: no query
fails, every result set comes from exactly one index version, and the product is in every one.

The new model is served by an OpenAI-compatible server on loopback that answers with the local
model's vectors tiled to 768 dimensions: another model id and dimension, with the same quality,
so the gate passes on merit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Engine

from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.embedding import Embedder
from mesh_rag_pipelines.sources.base import SourceContext
from mesh_rag_pipelines.store.index_versions import index_version_id, release_history
from mesh_rag_pipelines_tests.helpers import edited, sync_all
from mesh_rag_pipelines_tests.openai_compatible_server import OpenAICompatibleServer

MESH_RAG = str(Path(sys.executable).parent / "mesh-rag")


@pytest.fixture
def tiled_minilm(minilm: Embedder) -> Iterator[OpenAICompatibleServer]:
    def model(texts: list[str], dimensions: int) -> list[list[float]]:
        vectors = np.tile(minilm.embed(texts), dimensions // minilm.dimensions)
        return vectors.tolist()

    server = OpenAICompatibleServer(model=model, default_dimensions=768)
    server.start()
    yield server
    server.stop()


def _cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [MESH_RAG, *args], env=env, capture_output=True, text=True, timeout=900, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_a_dimension_changing_release_never_fails_a_query_or_mixes_versions(
    contracts: dict[str, DataProductContract],
    products_dir: Path,
    access: SourceContext,
    engine: Engine,
    database_url: str,
    s3_endpoint: str,
    minilm: Embedder,
    tiled_minilm: OpenAICompatibleServer,
    tmp_path: Path,
) -> None:
    blue = contracts["hr_policies"]
    sync_all(blue, access, minilm)
    env = {
        **os.environ,
        "MESH_RAG_DATABASE_URL": database_url,
        "MESH_RAG_S3_ENDPOINT_URL": s3_endpoint,
        "MESH_RAG_CONTRACTS_DIR": str(products_dir),
        "OPENAI_API_KEY": "test-key",
        "OPENAI_BASE_URL": tiled_minilm.base_url,
        "DAGSTER_HOME": str(tmp_path),
    }
    log, stop = tmp_path / "queries.jsonl", tmp_path / "stop"
    loop = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mesh_rag_pipelines_tests.query_loop",
            database_url,
            str(products_dir),
            blue.name,
            str(log),
            str(stop),
        ],
        env=env,
    )
    try:
        while not log.exists() or not log.read_text():
            assert loop.poll() is None
            time.sleep(0.2)
        green = edited(
            products_dir,
            "hr_policies",
            "provider: local\n  model: all-MiniLM-L6-v2\n  dimensions: 384",
            "provider: openai\n  model: minilm-tiled\n  dimensions: 768",
        )
        phases: dict[str, float] = {"start": time.time()}
        _cli(env, "build", "--product", green.name)
        phases["built"] = time.time()
        report = _cli(env, "release", "validate", "--product", green.name)
        assert "PASSED" in report, report
        _cli(env, "release", "swap", "--product", green.name)
        phases["swapped"] = time.time()
        time.sleep(3)
        _cli(env, "release", "rollback", "--product", green.name, "--reason", "drill")
        phases["rolled_back"] = time.time()
        time.sleep(2)
    finally:
        stop.touch()
        loop.wait(timeout=60)
    results: list[dict[str, Any]] = [json.loads(line) for line in log.read_text().splitlines()]

    assert [r for r in results if r["error"]] == []
    assert all(len(r["versions"]) == 1 and r["products"] == [blue.name] for r in results)
    served = [(r["at"], r["versions"][0]) for r in results]
    assert served[0][0] < phases["start"] and served[-1][0] > phases["rolled_back"]
    blue_id, green_id = index_version_id(blue), index_version_id(green)
    assert {v for at, v in served if at < phases["built"]} == {blue_id}
    assert green_id in {v for at, v in served if phases["swapped"] < at < phases["rolled_back"]}
    assert {v for at, v in served if at > phases["rolled_back"] + 1} == {blue_id}
    actions = [e.action for e in release_history(engine, blue.name)]
    assert actions[-3:] == ["validated", "swapped", "rolled_back"]
