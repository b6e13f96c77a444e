"""Real services for the tests: an embedded PostgreSQL with pgvector, a moto S3 server on
loopback over HTTP, and the real local embedding model. Each test gets its own database and
its own bucket, so tests never see each other's rows or objects."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from mesh_rag_pipelines.connections import s3_client
from mesh_rag_pipelines.contracts import DataProductContract, load_contracts
from mesh_rag_pipelines.contracts.loader import PRODUCTS_DIR, contract_files
from mesh_rag_pipelines.embedding import Embedder, embedder_for
from mesh_rag_pipelines.services.embedded_postgres import ensure_embedded_postgres
from mesh_rag_pipelines.services.local_s3 import ensure_local_s3, stop_local_s3
from mesh_rag_pipelines.sources.base import SourceContext
from mesh_rag_pipelines.sources.s3_landing import ensure_bucket
from mesh_rag_pipelines.store.database import engine_for, psycopg2_url
from mesh_rag_pipelines_tests.helpers import grant, shipped_contract, source_ctx

# The tests start their own services and name them; the local profile covers the rest.
os.environ.setdefault("MESH_RAG_PROFILE", "local")


@pytest.fixture(scope="session")
def services_home() -> Iterator[Path]:
    home = Path(tempfile.mkdtemp(prefix="mesh_rag_test_"))
    os.environ["MESH_RAG_HOME"] = str(home)
    yield home
    stop_local_s3(home)
    from mesh_rag_pipelines.services.embedded_postgres import stop_embedded_postgres

    stop_embedded_postgres(home / "pg")
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def server_url(services_home: Path) -> str:
    """A PostgreSQL server: MESH_RAG_TEST_DATABASE_URL if set, else an embedded one."""
    configured = os.environ.get("MESH_RAG_TEST_DATABASE_URL")
    if configured:
        return psycopg2_url(configured)
    return ensure_embedded_postgres(services_home / "pg")


def _with_database(url: str, database: str) -> str:
    base, _, query = url.partition("?")
    base = base.rsplit("/", 1)[0]
    return f"{base}/{database}" + (f"?{query}" if query else "")


@pytest.fixture
def new_database(server_url: str) -> Iterator[Callable[[], str]]:
    """Creates fresh, empty databases for one test (URLs); all are dropped after it."""
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    created: list[tuple[str, str]] = []

    def create() -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = _with_database(server_url, name)
        created.append((name, url))
        return url

    yield create
    for name, url in created:
        engine_for(url).dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def database_url(new_database: Callable[[], str]) -> str:
    """A fresh, empty database for one test."""
    return new_database()


@pytest.fixture
def engine(database_url: str) -> Engine:
    return engine_for(database_url)


@pytest.fixture(scope="session")
def s3_endpoint(services_home: Path) -> str:
    return ensure_local_s3(services_home)


@pytest.fixture
def s3(s3_endpoint: str):  # type: ignore[no-untyped-def]
    return s3_client(endpoint_url=s3_endpoint)


@pytest.fixture(scope="session")
def minilm() -> Embedder:
    """The real local model, loaded once for the whole session."""
    return embedder_for(load_contracts()[0].embedding)


@pytest.fixture
def products_dir(tmp_path: Path, s3_endpoint: str) -> Path:
    """A private copy of the shipped products, as plain contract files (`<name>.yaml`) beside
    copies of their sample data, with a bucket of its own, so that a test can edit contracts,
    documents and rows without touching the repository. Its platform policy
    (`platform_policy.yaml`) grants each domain exactly its sample's source, as the shipped one
    does: the store's `sample_sources.*`, the bucket's `support_tickets/`, the policies' folder."""
    target = tmp_path / "products"
    target.mkdir()
    bucket = f"landing-{uuid.uuid4().hex[:10]}"
    for path in contract_files(PRODUCTS_DIR):
        name = path.parent.name
        text = shipped_contract(name, tmp_path / "sample_data" / name)
        text = text.replace("bucket: northwind-landing", f"bucket: {bucket}")
        (target / f"{name}.yaml").write_text(text)
    grant(target, "commerce", databases=[{"tables": ["sample_sources.*"]}])
    grant(
        target, "customer_support", buckets=[{"bucket": bucket, "prefixes": ["support_tickets/"]}]
    )
    grant(target, "people", folders=[str(tmp_path / "sample_data" / "hr_policies")])
    ensure_bucket(s3_client(endpoint_url=s3_endpoint), bucket)
    return target


@pytest.fixture
def contracts(products_dir: Path) -> dict[str, DataProductContract]:
    return {c.name: c for c in load_contracts(products_dir)}


@pytest.fixture
def access(engine: Engine, s3) -> SourceContext:  # type: ignore[no-untyped-def]
    """How a test's syncs reach its sources: this store, this bucket's S3, the settings."""
    return source_ctx(engine, s3)


MESH_RAG = str(Path(sys.executable).parent / "mesh-rag")


class MeshRag:
    """`mesh-rag` as typed, in a subprocess, on this test's store, bucket and contracts."""

    def __init__(self, env: dict[str, str], cwd: Path):
        self.env, self.cwd = env, cwd

    def run(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [MESH_RAG, *args], env=self.env, cwd=self.cwd, capture_output=True, text=True,
            timeout=900,
        )  # fmt: skip
        if ok:
            assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return done


@pytest.fixture
def mesh_rag(tmp_path: Path, database_url: str, s3_endpoint: str, products_dir: Path) -> MeshRag:
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "MESH_RAG_HOME")}
    env.update(
        MESH_RAG_PROFILE="local",
        MESH_RAG_HOME=str(tmp_path / "home"),
        MESH_RAG_DATABASE_URL=database_url,
        MESH_RAG_S3_ENDPOINT_URL=s3_endpoint,
        MESH_RAG_CONTRACTS_DIR=str(products_dir),
    )
    return MeshRag(env, tmp_path)
