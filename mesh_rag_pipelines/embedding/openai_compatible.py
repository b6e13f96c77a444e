"""Embeddings from OpenAI or any OpenAI-compatible endpoint (base_url)."""

from __future__ import annotations

import numpy as np
from openai import OpenAI, omit

from mesh_rag_pipelines.contracts import EmbeddingSpec

# OpenAI accepts up to 2,048 inputs per request; fewer, larger requests cost fewer round trips.
REQUEST_BATCH = 512
_DIMENSIONS_PARAMETER = {"text-embedding-3-small", "text-embedding-3-large"}


class OpenAIEmbedder:
    """Batches texts into requests; the client retries rate limits and 5xx with backoff."""

    def __init__(
        self,
        spec: EmbeddingSpec,
        api_key: str,
        base_url: str | None = None,
        max_retries: int = 6,
        timeout: float = 60.0,
    ):
        self.model_id = spec.model_id
        self.dimensions = spec.dimensions
        self._model = spec.model
        self._client = OpenAI(
            api_key=api_key, base_url=base_url, max_retries=max_retries, timeout=timeout
        )

    def embed(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        for start in range(0, len(texts), REQUEST_BATCH):
            batch = texts[start : start + REQUEST_BATCH]
            response = self._client.embeddings.create(
                model=self._model,
                input=batch,
                dimensions=self.dimensions if self._model in _DIMENSIONS_PARAMETER else omit,
            )
            for item in response.data:
                out[start + item.index] = item.embedding
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms == 0, 1, norms)
