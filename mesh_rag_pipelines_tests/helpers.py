"""Shared test helpers: reading an index back, and building products."""

from __future__ import annotations

import numpy as np
from sqlalchemy import Engine, text

from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.embedding import Embedder
from mesh_rag_pipelines.pipeline import SourceAccess, build_product
from mesh_rag_pipelines.store.index_versions import live_versions
from mesh_rag_pipelines.store.schema import SCHEMA

IndexSnapshot = dict[tuple[str, int], tuple[int, str, str, tuple[str, ...], np.ndarray]]


def index_rows(engine: Engine, product: str) -> IndexSnapshot:
    """(doc id, chunk no) -> (doc version, text, model, acl groups, vector) of the live version."""
    version = live_versions(engine, [product])[0]
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                f"SELECT doc_id, chunk_no, doc_version, text, embedding_model, acl_groups, "
                f"embedding::text AS vec FROM {SCHEMA}.{version.table_name}"
            )
        )
        return {
            (r.doc_id, r.chunk_no): (
                r.doc_version,
                r.text,
                r.embedding_model,
                tuple(r.acl_groups),
                np.array(r.vec.strip("[]").split(","), dtype=np.float32),
            )
            for r in rows
        }


def assert_same_index(actual: IndexSnapshot, expected: IndexSnapshot, atol: float = 1e-5) -> None:
    assert sorted(actual) == sorted(expected)
    for key, (version, chunk_text, model, acl, vector) in expected.items():
        got = actual[key]
        assert got[:4] == (version, chunk_text, model, acl), key
        np.testing.assert_allclose(got[4], vector, atol=atol, err_msg=str(key))


def build_all(
    contracts: dict[str, DataProductContract], access: SourceAccess, embedder: Embedder
) -> dict[str, int]:
    """Build every product; texts embedded per product."""
    embedded = {}
    for name, contract in contracts.items():
        results = build_product(contract, access, embedder)
        embedded[name] = sum(index.texts_embedded for _, index in results)
    return embedded
