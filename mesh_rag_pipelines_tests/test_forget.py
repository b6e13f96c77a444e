"""Right to be forgotten: a document leaves every index version, chunk set, cache entry, state
and quarantine; replaying its change events never brings it back; an audit row remains."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from mesh_rag_pipelines.chunking import chunk_document
from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.embedding import Embedder, embedder_for
from mesh_rag_pipelines.governance.erasure import forget
from mesh_rag_pipelines.pipeline import SourceAccess, build_product
from mesh_rag_pipelines.store.index_versions import product_versions
from mesh_rag_pipelines.store.schema import SCHEMA
from mesh_rag_pipelines_tests.helpers import edited
from mesh_rag_pipelines_tests.landing import land, project_event, ticket

GONE = ticket("TCK-6001", 3, "Account closure", "Please close my account and delete my data.")
STAYS = ticket("TCK-6002", 1, "Tent pole", "A pole section of my tent cracked.")


def _count(engine: Engine, query: str, **params: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(query), params).scalar_one())


def test_a_forgotten_document_is_gone_everywhere_and_stays_gone(
    contracts: dict[str, DataProductContract],
    products_dir: Path,
    access: SourceAccess,
    engine: Engine,
    minilm: Embedder,
    s3: Any,
) -> None:
    tickets = contracts["support_tickets"]
    history = [project_event("upsert", {**GONE, "version": v}) for v in (1, 2, 3)]
    land(s3, tickets, "0001", [*history, project_event("upsert", STAYS)])
    land(
        s3, tickets, "0002", ['{"op": "upsert", "data": {"ticket_id": "TCK-6001", "version": "x"}}']
    )
    build_product(tickets, access, minilm)
    revised = edited(
        products_dir, "support_tickets", "distance: cosine", 'distance: cosine\n  revision: "2"'
    )
    build_product(revised, access, embedder_for)  # a second index version holds it too
    with engine.connect() as conn:
        versions = product_versions(conn, tickets.name)
    assert len(versions) == 2
    texts = [c.text_hash for c in chunk_document(tickets.chunking, GONE["subject"], GONE["body"])]
    assert (
        _count(engine, f"SELECT count(*) FROM {SCHEMA}.quarantine WHERE doc_id = 'TCK-6001'") == 1
    )

    erasure = forget(engine, tickets, "TCK-6001", actor="dpo", reason="erasure request 2026-113")

    assert erasure.versions == [v.id for v in versions]
    assert erasure.index_rows_removed == 2 * len(texts)
    for version in versions:
        assert (
            _count(
                engine,
                f"SELECT count(*) FROM {SCHEMA}.{version.table_name} WHERE doc_id = 'TCK-6001'",
            )
            == 0
        )
        assert (
            _count(
                engine,
                f"SELECT count(*) FROM {SCHEMA}.{version.table_name} WHERE doc_id = 'TCK-6002'",
            )
            > 0
        )
    for table in ("chunk", "indexed_document", "quarantine"):
        assert (
            _count(engine, f"SELECT count(*) FROM {SCHEMA}.{table} WHERE doc_id = 'TCK-6001'") == 0
        )
    assert (
        _count(
            engine,
            f"SELECT count(*) FROM {SCHEMA}.embedding_cache WHERE text_hash = ANY(:h)",
            h=texts,
        )
        == 0
    )
    with engine.connect() as conn:
        state = conn.execute(
            text(
                "SELECT title, content, metadata, deleted, forgotten_at "
                f"FROM {SCHEMA}.document_state WHERE doc_id = 'TCK-6001'"
            )
        ).one()
        audit = conn.execute(text(f"SELECT * FROM {SCHEMA}.erasure_audit")).mappings().one()
    assert (state.title, state.content, state.metadata, state.deleted) == (None, None, {}, True)
    assert state.forgotten_at is not None
    assert (audit["doc_id"], audit["actor"], audit["reason"]) == (
        "TCK-6001",
        "dpo",
        "erasure request 2026-113",
    )
    assert (
        audit["versions"] == erasure.versions
        and audit["index_rows_removed"] == erasure.index_rows_removed
    )
    assert GONE["body"] not in json.dumps(dict(audit), default=str)

    # The same events again, under a new key, and a newer version: nothing comes back.
    land(s3, tickets, "0003", [*history, project_event("upsert", {**GONE, "version": 9})])
    replay = build_product(revised, access, embedder_for)
    assert sum(chunk_set.documents_changed for chunk_set, _ in replay) == 0
    for version in versions:
        assert (
            _count(
                engine,
                f"SELECT count(*) FROM {SCHEMA}.{version.table_name} WHERE doc_id = 'TCK-6001'",
            )
            == 0
        )
