"""A new model or chunker is a release: a new index version fills beside the live one, is
validated against it, swapped in one transaction, and rolled back exactly; the product never
disappears from results on the way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from mesh_rag_pipelines.chunking import chunk_document
from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.embedding import Embedder, embedder_for
from mesh_rag_pipelines.releases import ReleaseError, retire, rollback, swap, validate_version
from mesh_rag_pipelines.retrieval import Caller, search
from mesh_rag_pipelines.sources.base import SourceContext
from mesh_rag_pipelines.store.health import index_health
from mesh_rag_pipelines.store.index_versions import (
    get_version,
    index_version_id,
    live_versions,
    maintained_versions,
    release_history,
)
from mesh_rag_pipelines.store.schema import SCHEMA
from mesh_rag_pipelines_tests.helpers import edited, sync_all
from mesh_rag_pipelines_tests.openai_compatible_server import OpenAICompatibleServer

QUERY = "How many weeks of paid leave does a primary caregiver get after a birth?"


def _results(engine: Engine, contract: DataProductContract) -> list[tuple[str, int, str, float]]:
    hits = search(engine, [contract], QUERY, Caller.of_product(contract), k=8)
    return [(h.doc_id, h.chunk_no, h.index_version, round(h.score, 6)) for h in hits]


def _texts_in_cache(engine: Engine) -> set[tuple[str, str]]:
    with engine.connect() as conn:
        rows = conn.execute(text(f"SELECT model_id, text_hash FROM {SCHEMA}.embedding_cache"))
        return {(r.model_id, r.text_hash) for r in rows}


def test_a_model_change_is_built_beside_the_live_version_validated_swapped_and_rolled_back(
    contracts: dict[str, DataProductContract],
    products_dir: Path,
    access: SourceContext,
    engine: Engine,
    minilm: Embedder,
) -> None:
    blue = contracts["hr_policies"]
    sync_all(blue, access, minilm)
    before = _results(engine, blue)
    assert before and {version for _, _, version, _ in before} == {index_version_id(blue)}

    green = edited(
        products_dir, "hr_policies", "distance: cosine", 'distance: cosine\n  revision: "2"'
    )
    assert index_version_id(green) != index_version_id(blue)
    # The contract moved on; until a swap the product is served by the live version, whose
    # own model embeds the query.
    assert _results(engine, green) == before

    embedded = sum(r.index.texts_embedded for r in sync_all(green, access, embedder_for) if r.index)
    candidate = get_version(engine, index_version_id(green))
    assert candidate is not None and candidate.status == "building"
    assert candidate.index_built_at is not None  # complete, so its HNSW index was built once
    health = index_health(engine, green.name, version=candidate)
    assert health is not None and health.consistent
    assert embedded == health.expected_rows - _duplicate_texts(engine, candidate.table_name)
    assert _results(engine, green) == before

    report = validate_version(engine, green, candidate.id, embedder_for)
    assert report.passed, report.markdown()
    assert get_version(engine, candidate.id).status == "validated"  # type: ignore[union-attr]
    assert "| golden_hit_rate | 1 | 1 |" in report.markdown()

    swapped = swap(engine, green.name, candidate.id, actor="test")
    assert (swapped.live, swapped.previous) == (candidate.id, index_version_id(blue))
    after = _results(engine, green)
    assert {version for _, _, version, _ in after} == {candidate.id}
    assert [(d, c, s) for d, c, _, s in after] == [(d, c, s) for d, c, _, s in before]

    rollback(engine, green.name, actor="test", reason="checking the way back")
    assert _results(engine, green) == before
    actions = [(e.action, e.version, e.actor) for e in release_history(engine, green.name)]
    assert actions[-3:] == [
        ("validated", candidate.id, "validation"),
        ("swapped", candidate.id, "test"),
        ("rolled_back", index_version_id(blue), "test"),
    ]


def _duplicate_texts(engine: Engine, table_name: str) -> int:
    """Rows whose text another row of the table has too (embedded once)."""
    with engine.connect() as conn:
        return int(
            conn.execute(
                text(f"SELECT count(*) - count(DISTINCT text_hash) FROM {SCHEMA}.{table_name}")
            ).scalar_one()
        )


def test_a_chunker_change_rechunks_every_document_from_state_and_embeds_only_new_texts(
    contracts: dict[str, DataProductContract],
    products_dir: Path,
    access: SourceContext,
    engine: Engine,
    minilm: Embedder,
) -> None:
    blue = contracts["hr_policies"]
    sync_all(blue, access, minilm)
    green = edited(
        products_dir,
        "hr_policies",
        "  version: 1\n  max_words: 180",
        "  version: 2\n  max_words: 120",
    )
    folder = green.resolve_path(green.source.path or "")
    travel = folder / "travel.md"
    travel.write_text(travel.read_text().replace("New York", "New York City"))
    cached = _texts_in_cache(engine)

    results = sync_all(green, access, minilm)

    with engine.connect() as conn:
        state = conn.execute(
            text(
                f"SELECT title, content FROM {SCHEMA}.document_state "
                "WHERE product = 'hr_policies' AND NOT deleted"
            )
        ).all()
    needed = {
        chunk.text_hash
        for doc in state
        for spec in (blue.chunking, green.chunking)
        for chunk in chunk_document(spec, doc.title, doc.content)
    }
    lacking = {h for h in needed if (minilm.model_id, h) not in cached}
    assert sum(r.index.texts_embedded for r in results) == len(lacking) > 0
    assert sum(r.chunks.documents_changed for r in results) == 1
    for contract in (blue, green):
        version = get_version(engine, index_version_id(contract))
        health = index_health(engine, contract.name, version=version)
        assert health is not None and health.consistent, contract.chunking
        assert health.live_documents == health.indexed_current == 12
    # The live version kept serving, with the edit, under its own chunker.
    hits = search(engine, [green], "hotel cap New York City", Caller.of_product(green), k=3)
    assert hits[0].doc_id == "travel.md" and hits[0].index_version == index_version_id(blue)


@pytest.fixture
def noise_server() -> Any:
    server = OpenAICompatibleServer()
    server.start()
    yield server
    server.stop()


def test_a_broken_candidate_fails_the_gate_and_only_a_recorded_force_swaps_it(
    contracts: dict[str, DataProductContract],
    products_dir: Path,
    access: SourceContext,
    engine: Engine,
    minilm: Embedder,
    noise_server: OpenAICompatibleServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A model that returns noise: the golden queries stop finding their documents."""
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.setenv("OPENAI_BASE_URL", noise_server.base_url)
    blue = contracts["hr_policies"]
    sync_all(blue, access, minilm)
    before = _results(engine, blue)
    noise = edited(
        products_dir,
        "hr_policies",
        "provider: local\n  model: all-MiniLM-L6-v2\n  dimensions: 384",
        "provider: openai\n  model: text-embedding-3-small\n  dimensions: 64",
    )
    sync_all(noise, access, embedder_for)
    candidate = index_version_id(noise)

    report = validate_version(engine, noise, candidate, embedder_for)

    assert not report.passed
    assert any(f.startswith("golden_hit_rate: ") for f in report.failures), report.markdown()
    assert get_version(engine, candidate).status == "failed"  # type: ignore[union-attr]
    with pytest.raises(ReleaseError, match="has not passed validation"):
        swap(engine, noise.name, candidate, actor="test")
    with pytest.raises(ReleaseError, match="needs a reason"):
        swap(engine, noise.name, candidate, actor="test", force=True)
    assert _results(engine, noise) == before

    swap(engine, noise.name, candidate, actor="ops", force=True, reason="incident drill")
    last = release_history(engine, noise.name)[-1]
    assert (last.action, last.version, last.actor, last.forced, last.reason) == (
        "swapped",
        candidate,
        "ops",
        True,
        "incident drill",
    )
    hits = search(engine, [noise], QUERY, Caller.of_product(noise), k=3)
    assert {h.index_version for h in hits} == {candidate}


def test_retirement_spares_the_live_version_and_the_rollback_target(
    contracts: dict[str, DataProductContract],
    products_dir: Path,
    access: SourceContext,
    engine: Engine,
    minilm: Embedder,
) -> None:
    versions = []
    contract = contracts["hr_policies"]
    sync_all(contract, access, minilm)
    versions.append(index_version_id(contract))
    for old, new in [("distance: cosine", 'distance: cosine\n  revision: "2"'), ('"2"', '"3"')]:
        contract = edited(products_dir, "hr_policies", old, new)
        sync_all(contract, access, embedder_for)
        versions.append(index_version_id(contract))
    first, second, third = versions
    assert [v.id for v in maintained_versions(engine, "hr_policies")] == versions

    swap(engine, "hr_policies", second, actor="test", force=True, reason="test")
    for refused in (second, first):
        with pytest.raises(ReleaseError):
            retire(engine, "hr_policies", refused, actor="test")
    retire(engine, "hr_policies", third, actor="test", reason="superseded")

    assert [v.id for v in maintained_versions(engine, "hr_policies")] == [first, second]
    assert [v.id for v in live_versions(engine, ["hr_policies"])] == [second]
