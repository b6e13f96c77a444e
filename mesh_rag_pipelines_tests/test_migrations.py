"""The store's schema is versioned: a store created by an earlier release is upgraded in place,
keeping every row, and its index versions keep their ids (no rebuild after an upgrade)."""

from __future__ import annotations

from typing import Any

import pytest
from alembic import command
from sqlalchemy import Engine, create_engine, text

from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.embedding import Embedder
from mesh_rag_pipelines.pipeline import SourceAccess, build_product
from mesh_rag_pipelines.store.database import (
    BASELINE,
    _alembic,
    ensure_schema,
    head_revision,
    store_revision,
)
from mesh_rag_pipelines.store.index_versions import (
    get_version,
    index_version_id,
    maintained_versions,
)
from mesh_rag_pipelines.store.schema import SCHEMA
from mesh_rag_pipelines_tests.helpers import index_rows

TABLES = (
    "document_state",
    "chunk",
    "embedding_cache",
    "index_version",
    "indexed_document",
    "serving_pointer",
    "source_cursor",
    "landing_object",
    "quarantine",
)


def _counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            table: int(conn.execute(text(f"SELECT count(*) FROM {SCHEMA}.{table}")).scalar_one())
            for table in TABLES
        }


def _downgrade_to_baseline(engine: Engine, contract: DataProductContract) -> None:
    """Turn a store into what the baseline release left: its registry columns, no history."""
    version = index_version_id(contract)
    with engine.begin() as conn:
        conn.execute(text(f"DROP TABLE {SCHEMA}.release_event"))
        for column in ("spec", "index_built_at", "validated_at", "retired_at", "dropped_at"):
            conn.execute(text(f"ALTER TABLE {SCHEMA}.index_version DROP COLUMN {column}"))
        conn.execute(text(f"UPDATE {SCHEMA}.alembic_version SET version_num = :v"), {"v": BASELINE})
        assert store_revision(conn) == BASELINE
        assert (
            conn.execute(
                text(f"SELECT status FROM {SCHEMA}.index_version WHERE id = :v"), {"v": version}
            ).scalar_one()
            == "live"
        )


def test_a_baseline_store_is_upgraded_keeping_every_row_and_its_index_versions(
    contracts: dict[str, DataProductContract],
    access: SourceAccess,
    database_url: str,
    minilm: Embedder,
    s3: Any,
) -> None:
    tickets = contracts["support_tickets"]
    from mesh_rag_pipelines.samples import seed_sources

    engine = create_engine(database_url)
    ensure_schema(engine)
    seed_sources([tickets], engine, s3)
    build_product(tickets, SourceAccess(engine, s3), minilm)
    rows = index_rows(engine, tickets.name)
    _downgrade_to_baseline(engine, tickets)
    counts = _counts(engine)

    ensure_schema(engine)

    with engine.connect() as conn:
        assert store_revision(conn) == head_revision()
    assert _counts(engine) == counts
    version = get_version(engine, index_version_id(tickets))
    assert version is not None and version.status == "live"
    assert version.spec == {
        "chunking": tickets.chunking.model_dump(),
        "embedding": tickets.embedding.model_dump(),
        "index": tickets.index.model_dump(),
    }
    assert version.index_built_at is not None
    results = build_product(tickets, SourceAccess(engine, s3), minilm)
    assert sum(index.texts_embedded + index.documents_indexed for _, index in results) == 0
    assert [v.id for v in maintained_versions(engine, tickets.name)] == [version.id]
    assert index_rows(engine, tickets.name).keys() == rows.keys()
    engine.dispose()


def test_a_store_created_before_migrations_is_recognized_as_the_baseline(
    database_url: str,
) -> None:
    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE EXTENSION IF NOT EXISTS vector"))
        conn.execute(text(f"CREATE SCHEMA {SCHEMA}"))
        command.upgrade(_alembic(conn), BASELINE)
        conn.execute(text(f"DROP TABLE {SCHEMA}.alembic_version"))  # as create_all left it

    ensure_schema(engine)

    with engine.connect() as conn:
        assert store_revision(conn) == head_revision()
    engine.dispose()


def test_a_store_newer_than_the_code_is_refused_with_what_to_do(database_url: str) -> None:
    engine = create_engine(database_url)
    ensure_schema(engine)
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE {SCHEMA}.alembic_version SET version_num = '9999'"))
    with pytest.raises(RuntimeError, match="revision 9999, newer than this code knows"):
        ensure_schema(engine)
    with engine.begin() as conn:
        conn.execute(
            text(f"UPDATE {SCHEMA}.alembic_version SET version_num = :v"), {"v": head_revision()}
        )
    engine.dispose()
