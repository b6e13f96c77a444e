"""The OpenAI path over real HTTP against an OpenAI-compatible server on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from sqlalchemy import Engine

from mesh_rag_pipelines.contracts import DataProductContract, EmbeddingSpec
from mesh_rag_pipelines.embedding import embedder_for
from mesh_rag_pipelines.embedding.openai_compatible import REQUEST_BATCH
from mesh_rag_pipelines.retrieval import Caller, search
from mesh_rag_pipelines.sources.base import SourceContext
from mesh_rag_pipelines_tests.helpers import index_rows, sync_all
from mesh_rag_pipelines_tests.openai_compatible_server import OpenAICompatibleServer, fake_vector

SMALL = EmbeddingSpec(provider="openai", model="text-embedding-3-small", dimensions=64)


@pytest.fixture
def server() -> Iterator[OpenAICompatibleServer]:
    server = OpenAICompatibleServer()
    server.start()
    yield server
    server.stop()


def test_texts_are_sent_in_batches_and_come_back_in_order_and_normalized(
    server: OpenAICompatibleServer,
) -> None:
    embedder = embedder_for(SMALL, api_key="test-key", base_url=server.base_url)
    texts = [f"text number {i}" for i in range(REQUEST_BATCH * 2 + 3)]
    vectors = embedder.embed(texts)
    assert [len(r["input"]) for r in server.requests] == [REQUEST_BATCH, REQUEST_BATCH, 3]
    assert all(
        r["dimensions"] == 64 and r["model"] == "text-embedding-3-small" for r in server.requests
    )
    expected = np.array(fake_vector(texts[700], 64), dtype=np.float32)
    np.testing.assert_allclose(vectors[700], expected / np.linalg.norm(expected), rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)


def test_rate_limited_requests_are_retried(server: OpenAICompatibleServer) -> None:
    server.faults = ["rate_limited", "rate_limited"]
    embedder = embedder_for(SMALL, api_key="test-key", base_url=server.base_url)
    vectors = embedder.embed(["a", "b"])
    assert vectors.shape == (2, 64)
    assert len(server.requests) == 3


def test_openai_provider_without_key_fails_with_what_to_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(RuntimeError, match="needs OPENAI_API_KEY"):
        embedder_for(SMALL)


def test_a_product_builds_and_answers_through_an_openai_compatible_endpoint(
    server: OpenAICompatibleServer,
    contracts: dict[str, DataProductContract],
    access: SourceContext,
    engine: Engine,
) -> None:
    contract = contracts["hr_policies"].model_copy(update={"embedding": SMALL})
    contract._origin = contracts["hr_policies"]._origin
    embedder = embedder_for(SMALL, api_key="test-key", base_url=server.base_url)
    sync_all(contract, access, embedder)
    rows = index_rows(engine, "hr_policies")
    assert rows and {row[2] for row in rows.values()} == {SMALL.model_id}
    assert sum(len(r["input"]) for r in server.requests) == len({row[1] for row in rows.values()})
    some_text = next(iter(rows.values()))[1]
    caller = Caller.of_product(contract)
    hits = search(engine, [contract], some_text, caller, k=1, embedders={SMALL.model_id: embedder})
    assert hits[0].text == some_text
