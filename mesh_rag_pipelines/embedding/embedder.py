"""The embedder interface and the choice of implementation from a contract's spec."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from mesh_rag_pipelines.contracts import EmbeddingSpec
from mesh_rag_pipelines.embedding.verify import EmbeddingReplyError, expectation, reply_problem
from mesh_rag_pipelines.settings import OPENAI_API_KEY, OPENAI_BASE_URL, Settings
from mesh_rag_pipelines.settings import current as current_settings


class Embedder(Protocol):
    """Turns texts into unit-length float32 vectors of a fixed model identity."""

    model_id: str
    dimensions: int

    def embed(self, texts: list[str]) -> np.ndarray: ...


def embed_checked(embedder: Embedder, texts: list[str], product: str) -> np.ndarray:
    """The embedder's vectors for `texts`, verified whatever the embedder; errors name the
    product, so a failed run says whose index was being built."""
    try:
        vectors = embedder.embed(texts)
    except EmbeddingReplyError as exc:
        raise EmbeddingReplyError(f"product {product}: {exc}") from exc
    problem = reply_problem(vectors, len(texts), embedder.dimensions)
    if problem:
        raise EmbeddingReplyError(
            f"product {product}: embedding model {embedder.model_id}: "
            f"{expectation(len(texts), embedder.dimensions)}, {problem}"
        )
    return vectors


def embedder_for(
    spec: EmbeddingSpec,
    api_key: str | None = None,
    base_url: str | None = None,
    settings: Settings | None = None,
) -> Embedder:
    """The local model for provider 'local'; the OpenAI-compatible endpoint for 'openai'.

    Credentials default to the settings' OPENAI_API_KEY and OPENAI_BASE_URL.
    """
    if spec.provider == "local":
        from mesh_rag_pipelines.embedding.local_model import LocalSentenceTransformer

        return LocalSentenceTransformer.shared(spec)
    from mesh_rag_pipelines.embedding.openai_compatible import OpenAIEmbedder

    settings = settings or current_settings()
    api_key = api_key or settings.get(OPENAI_API_KEY)
    base_url = base_url or settings.get(OPENAI_BASE_URL)
    if not api_key:
        raise RuntimeError(
            f"embedding model {spec.model!r} needs {OPENAI_API_KEY} "
            f"(and {OPENAI_BASE_URL} for a compatible endpoint); "
            "or set the contract's embedding.provider to 'local'"
        )
    return OpenAIEmbedder(spec, api_key=api_key, base_url=base_url)


def query_embedder_for(spec: EmbeddingSpec) -> Embedder:
    """The embedder for a query: local MiniLM computed with NumPy (same vectors, no PyTorch to
    import, so a one-query process answers in a fraction of a second); any other model as
    `embedder_for` gives it."""
    from mesh_rag_pipelines.embedding.minilm_numpy import MODEL, NumpyMiniLM

    if spec.provider == "local" and spec.model == MODEL:
        return NumpyMiniLM(spec)
    return embedder_for(spec)
