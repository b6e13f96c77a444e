"""A full build of the sample products: deterministic, complete, and queryable."""

from __future__ import annotations

from sqlalchemy import Engine, text

from mesh_rag_pipelines.chunking import chunk_document
from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.embedding import Embedder
from mesh_rag_pipelines.pipeline import SourceAccess
from mesh_rag_pipelines.retrieval import search
from mesh_rag_pipelines.samples import seed_sources
from mesh_rag_pipelines.store.schema import SCHEMA
from mesh_rag_pipelines_tests.helpers import assert_same_index, build_all, index_rows


def _chunker_output(engine: Engine, contract: DataProductContract) -> dict[tuple[str, int], str]:
    """What the chunker makes of the live documents, computed apart from the pipeline."""
    with engine.connect() as conn:
        documents = conn.execute(text(
            f"SELECT doc_id, title, content FROM {SCHEMA}.document_state "
            "WHERE product = :p AND NOT deleted"), {"p": contract.name}).all()
    return {
        (doc.doc_id, chunk.chunk_no): chunk.text
        for doc in documents
        for chunk in chunk_document(contract.chunking, doc.title, doc.content)
    }


def test_full_build_is_complete_and_a_rebuild_from_scratch_is_identical(
    contracts: dict[str, DataProductContract], access: SourceAccess, engine: Engine,
    minilm: Embedder, s3,  # type: ignore[no-untyped-def]
) -> None:
    seed_sources(list(contracts.values()), engine, s3)
    first_embedded = build_all(contracts, access, minilm)
    first = {name: index_rows(engine, name) for name in contracts}

    for name, contract in contracts.items():
        expected = _chunker_output(engine, contract)
        assert {key: row[1] for key, row in first[name].items()} == expected
        assert first_embedded[name] == len({row[1] for row in first[name].values()})
    assert all(len(rows) > 50 for rows in first.values())

    assert build_all(contracts, access, minilm) == dict.fromkeys(contracts, 0)

    with engine.begin() as conn:  # forget everything, embedding cache included
        conn.execute(text(f"DROP SCHEMA {SCHEMA} CASCADE"))
    from mesh_rag_pipelines.store.database import ensure_schema

    ensure_schema(engine)
    build_all(contracts, access, minilm)
    for name in contracts:
        assert_same_index(index_rows(engine, name), first[name])


def test_golden_query_finds_its_document_first(
    contracts: dict[str, DataProductContract], access: SourceAccess, engine: Engine,
    minilm: Embedder, s3,  # type: ignore[no-untyped-def]
) -> None:
    seed_sources(list(contracts.values()), engine, s3)
    build_all(contracts, access, minilm)
    for name, contract in contracts.items():
        golden = contract.golden_queries[0]
        hits = search(engine, list(contracts.values()), golden.query, k=5,
                      embedders={minilm.model_id: minilm})
        assert hits[0].doc_id in golden.expected_document_ids, (name, golden.query, hits[0])
        assert hits[0].product == name
