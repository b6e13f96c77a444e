"""The embedder interface and the choice of implementation from a contract's spec."""

from __future__ import annotations

import os
from typing import Protocol

import numpy as np

from mesh_rag_pipelines import settings
from mesh_rag_pipelines.contracts import EmbeddingSpec


class Embedder(Protocol):
    """Turns texts into unit-length float32 vectors of a fixed model identity."""

    model_id: str
    dimensions: int

    def embed(self, texts: list[str]) -> np.ndarray: ...


def embedder_for(
    spec: EmbeddingSpec, api_key: str | None = None, base_url: str | None = None
) -> Embedder:
    """The local model for provider 'local'; the OpenAI-compatible endpoint for 'openai'.

    Credentials default to OPENAI_API_KEY and OPENAI_BASE_URL.
    """
    if spec.provider == "local":
        from mesh_rag_pipelines.embedding.local_model import LocalSentenceTransformer

        return LocalSentenceTransformer.shared(spec)
    from mesh_rag_pipelines.embedding.openai_compatible import OpenAIEmbedder

    api_key = api_key or os.environ.get(settings.OPENAI_API_KEY)
    base_url = base_url or os.environ.get(settings.OPENAI_BASE_URL)
    if not api_key:
        raise RuntimeError(
            f"embedding model {spec.model!r} needs {settings.OPENAI_API_KEY} "
            f"(and {settings.OPENAI_BASE_URL} for a compatible endpoint); "
            "or set the contract's embedding.provider to 'local'"
        )
    return OpenAIEmbedder(spec, api_key=api_key, base_url=base_url)
