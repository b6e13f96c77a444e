"""Engine creation and idempotent schema setup."""

from __future__ import annotations

import os
from functools import cache

from sqlalchemy import Engine, create_engine, text

from mesh_rag_pipelines import settings
from mesh_rag_pipelines.store.schema import SCHEMA, Base

_SCHEMA_LOCK = 7_340_001  # advisory lock id: concurrent runs create the schema one at a time


def psycopg2_url(url: str) -> str:
    """Name the driver: a bare postgresql:// URL may select psycopg 3 in newer SQLAlchemy."""
    return url.replace("postgresql://", "postgresql+psycopg2://", 1)


def database_url() -> str:
    """The configured database, or the embedded PostgreSQL when none is set."""
    url = os.environ.get(settings.DATABASE_URL)
    if url:
        return psycopg2_url(url)
    from mesh_rag_pipelines.services.embedded_postgres import ensure_embedded_postgres

    return ensure_embedded_postgres(settings.home() / "pg")


@cache
def source_engine(url: str) -> Engine:
    """An engine for a source database: read only, so no store schema is created there."""
    return create_engine(psycopg2_url(url), pool_pre_ping=True, pool_size=2, max_overflow=2)


@cache
def engine_for(url: str) -> Engine:
    engine = create_engine(url, pool_pre_ping=True, pool_size=4, max_overflow=4)
    ensure_schema(engine)
    return engine


def ensure_schema(engine: Engine) -> None:
    """Create the extension, schema and shared tables if missing; safe to run concurrently."""
    with engine.begin() as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _SCHEMA_LOCK})
        conn.execute(text("CREATE EXTENSION IF NOT EXISTS vector"))
        conn.execute(text(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))
        Base.metadata.create_all(conn, checkfirst=True)
