"""A full build of the sample products: deterministic, complete, and queryable."""

from __future__ import annotations

from sqlalchemy import Engine, text

from mesh_rag_pipelines.chunking import chunk_document
from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.embedding import Embedder
from mesh_rag_pipelines.retrieval import Caller, search
from mesh_rag_pipelines.samples import seed_sources
from mesh_rag_pipelines.sources.base import SourceContext
from mesh_rag_pipelines.store.schema import SCHEMA
from mesh_rag_pipelines_tests.helpers import assert_same_index, build_all, index_rows, source_ctx


def _chunker_output(engine: Engine, contract: DataProductContract) -> dict[tuple[str, int], str]:
    """What the chunker makes of the live documents, computed apart from the pipeline."""
    with engine.connect() as conn:
        documents = conn.execute(
            text(
                f"SELECT doc_id, title, content FROM {SCHEMA}.document_state "
                "WHERE product = :p AND NOT deleted"
            ),
            {"p": contract.name},
        ).all()
    return {
        (doc.doc_id, chunk.chunk_no): chunk.text
        for doc in documents
        for chunk in chunk_document(contract.chunking, doc.title, doc.content)
    }


def test_full_build_is_complete_and_a_rebuild_from_scratch_is_identical(
    contracts: dict[str, DataProductContract],
    access: SourceContext,
    engine: Engine,
    minilm: Embedder,
    s3,  # type: ignore[no-untyped-def]
) -> None:
    seed_sources(list(contracts.values()), source_ctx(engine, s3))
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


KNOWN_DOCUMENT_QUERIES = {
    "hr_policies": ("What is the nightly hotel cap when travelling to New York?", "travel.md"),
    "catalog_products": (
        "sleeping bag for two where each sleeper unzips their own side",
        "NW-SLP-0013",
    ),
    "support_tickets": (
        "transfer reward points of a deceased parent to the spouse's account",
        "T-10034",
    ),
}


def test_query_for_a_known_document_returns_it_first_and_golden_queries_hit_top_5(
    contracts: dict[str, DataProductContract],
    access: SourceContext,
    engine: Engine,
    minilm: Embedder,
    s3,  # type: ignore[no-untyped-def]
) -> None:
    seed_sources(list(contracts.values()), source_ctx(engine, s3))
    build_all(contracts, access, minilm)
    everything = list(contracts.values())
    everyone = Caller.of(group for c in everything for group in c.acl_groups)
    embedders = {minilm.model_id: minilm}
    for product, (query, doc_id) in KNOWN_DOCUMENT_QUERIES.items():
        first = search(engine, everything, query, everyone, k=5, embedders=embedders)[0]
        assert (first.product, first.doc_id) == (product, doc_id), query
    for contract in everything:
        for golden in contract.golden_queries:
            caller = Caller.of_product(contract)
            hits = search(engine, [contract], golden.query, caller, k=5, embedders=embedders)
            assert {h.doc_id for h in hits} & set(golden.expected_document_ids), golden.query
