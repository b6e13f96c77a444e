"""Engine creation and the store's schema, versioned with Alembic migrations."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, inspect, text

from mesh_rag_pipelines.store.schema import SCHEMA

_SCHEMA_LOCK = 7_340_001  # advisory lock id: concurrent runs migrate the schema one at a time
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# The revision of a store created before migrations existed (by create_all).
BASELINE = "0001"


def psycopg2_url(url: str) -> str:
    """Name the driver: a bare postgresql:// URL may select psycopg 3 in newer SQLAlchemy, and
    SQLAlchemy does not know libpq's postgres:// spelling at all."""
    for bare in ("postgresql://", "postgres://"):
        if url.startswith(bare):
            return "postgresql+psycopg2://" + url.removeprefix(bare)
    return url


@cache
def source_engine(url: str) -> Engine:
    """An engine for a source database: read only, so no store schema is created there."""
    return create_engine(psycopg2_url(url), pool_pre_ping=True, pool_size=2, max_overflow=2)


@cache
def engine_for(url: str) -> Engine:
    engine = create_engine(psycopg2_url(url), pool_pre_ping=True, pool_size=4, max_overflow=4)
    ensure_schema(engine)
    return engine


def ensure_schema(engine: Engine) -> None:
    """Create the extension and schema, and migrate the tables to this code's revision, in one
    transaction under a lock: safe to run concurrently, and a failed upgrade changes nothing."""
    with engine.begin() as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _SCHEMA_LOCK})
        conn.execute(text("CREATE EXTENSION IF NOT EXISTS vector"))
        conn.execute(text(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))
        migrate(conn)


def _alembic(conn: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = conn
    return config


def head_revision() -> str:
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert head is not None
    return head


def store_revision(conn: Connection) -> str | None:
    if not inspect(conn).has_table("alembic_version", schema=SCHEMA):
        return None
    return conn.execute(text(f"SELECT version_num FROM {SCHEMA}.alembic_version")).scalar()


def migrate(conn: Connection) -> None:
    """Upgrade the store to this code's head revision; refuse a store newer than the code."""
    config = _alembic(conn)
    current = store_revision(conn)
    if current is None and inspect(conn).has_table("document_state", schema=SCHEMA):
        command.stamp(config, BASELINE)  # created by create_all before migrations existed
        current = BASELINE
    head = head_revision()
    if current == head:
        return
    known = {script.revision for script in ScriptDirectory(str(MIGRATIONS)).walk_revisions()}
    if current is not None and current not in known:
        raise RuntimeError(
            f"the store's schema is at revision {current}, newer than this code knows "
            f"(head {head}): upgrade mesh-rag-pipelines before using this store"
        )
    command.upgrade(config, head)
