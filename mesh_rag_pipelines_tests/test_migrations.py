"""The store's schema is versioned: a store created by an earlier release is upgraded in place,
keeping every row, and its index versions keep their ids (no rebuild after an upgrade)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Engine, MetaData, Table, create_engine, select, text

from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.embedding import Embedder
from mesh_rag_pipelines.retrieval import Caller, search
from mesh_rag_pipelines.samples import seed_sources
from mesh_rag_pipelines.sources.base import SourceContext
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
from mesh_rag_pipelines.store.schema import SCHEMA, hnsw_index, index_table
from mesh_rag_pipelines_tests.helpers import assert_same_index, index_rows, source_ctx, sync_all

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


def _copy_into_a_baseline_store(source: Engine, target: Engine) -> None:
    """What the first release left: the target is migrated to the baseline revision only, and
    gets every row of the source in the baseline's columns, index-version tables included."""
    with target.begin() as conn:
        conn.execute(text("CREATE EXTENSION IF NOT EXISTS vector"))
        conn.execute(text(f"CREATE SCHEMA {SCHEMA}"))
        command.upgrade(_alembic(conn), BASELINE)
    with source.connect() as old, target.begin() as new:
        for name in TABLES:
            baseline = Table(name, MetaData(schema=SCHEMA), autoload_with=new)
            current = Table(name, MetaData(schema=SCHEMA), autoload_with=old)
            columns = [current.c[column.name] for column in baseline.columns]
            rows = old.execute(select(*columns)).mappings().all()
            if rows:
                new.execute(baseline.insert(), [dict(r) for r in rows])
        for version in old.execute(text(f"SELECT * FROM {SCHEMA}.index_version")).all():
            table = index_table(version.table_name, version.dimensions, version.distance)
            table.create(new)
            hnsw_index(version.table_name, version.dimensions, version.distance, 16, 64).create(new)
            rows = old.execute(select(table)).mappings()
            new.execute(table.insert(), [dict(r) for r in rows])


def test_a_baseline_store_is_upgraded_keeping_every_row_and_its_index_versions(
    contracts: dict[str, DataProductContract],
    access: SourceContext,
    engine: Engine,
    new_database: Callable[[], str],
    minilm: Embedder,
    s3: Any,
) -> None:
    tickets = contracts["support_tickets"]
    seed_sources([tickets], source_ctx(engine, s3))
    sync_all(tickets, access, minilm)
    rows = index_rows(engine, tickets.name)
    old = create_engine(new_database())
    _copy_into_a_baseline_store(engine, old)
    counts = _counts(old)
    assert counts == _counts(engine) and counts["indexed_document"] > 100

    ensure_schema(old)

    with old.connect() as conn:
        assert store_revision(conn) == head_revision()
        layout = conn.execute(text(f"SELECT product, shards FROM {SCHEMA}.product_layout"))
        assert layout.all() == [("support_tickets", 4)]  # the earlier releases' fixed count
    assert _counts(old) == counts
    version = get_version(old, index_version_id(tickets))
    assert version is not None and version.status == "live" and version.index_built_at
    assert version.spec == {
        "chunking": tickets.chunking.model_dump(),
        "embedding": tickets.embedding.model_dump(),
        "index": tickets.index.model_dump(),
    }
    results = sync_all(tickets, source_ctx(old, s3), minilm)
    assert sum(r.index.texts_embedded + r.index.documents_indexed for r in results) == 0
    assert [v.id for v in maintained_versions(old, tickets.name)] == [version.id]
    assert_same_index(index_rows(old, tickets.name), rows)
    staff = search(old, [tickets], "refund", Caller.of(["employees"]), k=5)
    agents = search(old, [tickets], "refund", Caller.of(["support_agents"]), k=5)
    assert (staff, len(agents)) == ([], 5)  # the upgraded table is under row-level security
    old.dispose()


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
