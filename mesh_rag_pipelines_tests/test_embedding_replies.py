"""Embedding replies are verified before use: one finite, non-zero vector of the contract's
dimension per input. A bad reply is retried; if it stays bad the run fails naming the product,
the model, what was expected and what came back, and nothing of it reaches the cache or index.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import numpy as np
import pytest
from sqlalchemy import Engine, text

from mesh_rag_pipelines.contracts import DataProductContract, EmbeddingSpec
from mesh_rag_pipelines.embedding.openai_compatible import OpenAIEmbedder
from mesh_rag_pipelines.embedding.verify import EmbeddingReplyError
from mesh_rag_pipelines.sources.base import SourceContext
from mesh_rag_pipelines.store.health import index_health
from mesh_rag_pipelines.store.schema import SCHEMA
from mesh_rag_pipelines_tests.helpers import index_rows, sync_all
from mesh_rag_pipelines_tests.openai_compatible_server import (
    FAULTS,
    OpenAICompatibleServer,
    expected_vector,
)

SPEC = EmbeddingSpec(provider="openai", model="text-embedding-3-small", dimensions=32)


@pytest.fixture
def server() -> Iterator[OpenAICompatibleServer]:
    server = OpenAICompatibleServer()
    server.start()
    yield server
    server.stop()


def _embedder(server: OpenAICompatibleServer, **kwargs: float) -> OpenAIEmbedder:
    options = {"timeout": 1.0, "max_retries": 6, "retry_seconds": 0.01, **kwargs}
    return OpenAIEmbedder(SPEC, api_key="test-key", base_url=server.base_url, **options)  # type: ignore[arg-type]


def _policies(contracts: dict[str, DataProductContract]) -> DataProductContract:
    contract = contracts["hr_policies"].model_copy(update={"embedding": SPEC})
    contract._origin = contracts["hr_policies"]._origin
    return contract


def _cache(engine: Engine) -> dict[str, np.ndarray]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(f"SELECT text_hash, embedding::text AS v FROM {SCHEMA}.embedding_cache")
        )
        return {r.text_hash: np.array(r.v.strip("[]").split(","), dtype=np.float32) for r in rows}


def _chunk_texts(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        return dict(conn.execute(text(f"SELECT text_hash, text FROM {SCHEMA}.chunk")).all())


def _assert_every_stored_vector_is_right(engine: Engine, product: str) -> None:
    texts = _chunk_texts(engine)
    cache = _cache(engine)
    assert cache, "nothing was cached"
    for text_hash, vector in cache.items():
        np.testing.assert_allclose(vector, expected_vector(texts[text_hash], 32), atol=1e-5)
    for key, (_, chunk_text, _, _, vector) in index_rows(engine, product).items():
        np.testing.assert_allclose(vector, expected_vector(chunk_text, 32), atol=1e-5, err_msg=key)


@pytest.mark.parametrize(
    "fault", ["short_reply", "wrong_dimensions", "nan", "zero_vector", "duplicate_index"]
)
def test_a_bad_reply_is_retried_and_only_right_vectors_are_stored(
    fault: str,
    server: OpenAICompatibleServer,
    contracts: dict[str, DataProductContract],
    access: SourceContext,
    engine: Engine,
) -> None:
    server.faults = [fault]
    contract = _policies(contracts)

    sync_all(contract, access, _embedder(server))

    assert server.faults_served == [fault]
    health = index_health(engine, contract.name)
    assert health is not None and health.consistent
    _assert_every_stored_vector_is_right(engine, contract.name)


@pytest.mark.parametrize(
    ("fault", "received"),
    [
        ("short_reply", r"received 2 embeddings"),
        ("wrong_dimensions", r"received an embedding of 33 dimensions at index \d"),
        ("nan", r"received a non-finite value in the embedding at index \d"),
        ("zero_vector", r"received an all-zero embedding at index \d"),
    ],
)
def test_a_reply_that_stays_bad_fails_the_run_naming_product_model_and_what_came_back(
    fault: str,
    received: str,
    server: OpenAICompatibleServer,
    contracts: dict[str, DataProductContract],
    access: SourceContext,
    engine: Engine,
) -> None:
    contract = _policies(contracts)
    embedder = _embedder(server)
    server.faults = [fault] * 100
    with pytest.raises(EmbeddingReplyError) as error:
        embedder.embed(["first text", "second text", "third text"])
    assert len(server.requests) == 3  # the first reply and two retries
    message = str(error.value)
    assert message.startswith(
        "embedding model openai:text-embedding-3-small:1:32 at "
        f"{server.base_url}: expected 3 embeddings of 32 dimensions, "
    )
    assert re.search(received, message), message

    with pytest.raises(EmbeddingReplyError, match=r"^product hr_policies: embedding model "):
        sync_all(contract, access, embedder)
    assert _cache(engine) == {}
    assert index_rows(engine, contract.name) == {}


def test_a_flaky_provider_loses_duplicates_and_corrupts_nothing(
    contracts: dict[str, DataProductContract], access: SourceContext, engine: Engine
) -> None:
    """Every kind of fault once, then 20% of replies at random; runs are repeated until one
    completes, and every failure on the way is a loud EmbeddingReplyError."""
    server = OpenAICompatibleServer(faults=list(FAULTS), fault_rate=0.2, seed=7, hang_seconds=1.5)
    server.start()
    contract = _policies(contracts)
    # Small requests, so that the product takes many of them and meets every kind of fault.
    embedder = _embedder(server, request_batch=8, reply_attempts=2)
    failures = []
    try:
        for _ in range(10):
            try:
                sync_all(contract, access, embedder)
                break
            except EmbeddingReplyError as exc:
                failures.append(str(exc))
    finally:
        server.stop()

    assert set(server.faults_served) == set(FAULTS)
    assert len(server.faults_served) > len(FAULTS)
    assert all(f.startswith("product hr_policies: embedding model ") for f in failures)
    health = index_health(engine, contract.name)
    assert health is not None and health.consistent and health.rows == health.expected_rows
    _assert_every_stored_vector_is_right(engine, contract.name)
    assert len(_cache(engine)) == len(set(_chunk_texts(engine)))
