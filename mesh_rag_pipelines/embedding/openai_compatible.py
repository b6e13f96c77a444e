"""Embeddings from OpenAI or any OpenAI-compatible endpoint (base_url)."""

from __future__ import annotations

import logging
import time
from urllib.parse import urlparse

import numpy as np
from openai import NotFoundError, OpenAI, omit

from mesh_rag_pipelines.contracts import EmbeddingSpec
from mesh_rag_pipelines.embedding.verify import EmbeddingReplyError, expectation, reply_problem
from mesh_rag_pipelines.settings import OPENAI_BASE_URL

# OpenAI accepts up to 2,048 inputs per request; fewer, larger requests cost fewer round trips.
REQUEST_BATCH = 512
_DIMENSIONS_PARAMETER = {"text-embedding-3-small", "text-embedding-3-large"}
log = logging.getLogger(__name__)


class OpenAIEmbedder:
    """Batches texts into requests and verifies every reply.

    The client retries rate limits, 5xx and timeouts with backoff (`max_retries`); a reply that
    arrives but is wrong (too few vectors, another dimension, NaN, all zeros, repeated indexes)
    is asked for again up to `reply_attempts` times, then the run fails naming what came back.
    """

    def __init__(
        self,
        spec: EmbeddingSpec,
        api_key: str,
        base_url: str | None = None,
        max_retries: int = 6,
        timeout: float = 60.0,
        request_batch: int = REQUEST_BATCH,
        reply_attempts: int = 3,
        retry_seconds: float = 1.0,
    ):
        self.model_id = spec.model_id
        self.dimensions = spec.dimensions
        self._model = spec.model
        self._request_batch = request_batch
        self._reply_attempts = reply_attempts
        self._retry_seconds = retry_seconds
        self._client = OpenAI(
            api_key=api_key, base_url=base_url, max_retries=max_retries, timeout=timeout
        )
        self._where = f"embedding model {self.model_id} at {self._client.base_url}".rstrip("/")

    def _not_found(self, exc: NotFoundError) -> str:
        """A 404 names the URL asked; most often a base URL without its API version."""
        url = f"{str(self._client.base_url).rstrip('/')}/embeddings"
        hint = (
            ""
            if urlparse(url).path.rstrip("/").endswith("/v1/embeddings")
            else f"; OpenAI-compatible servers serve it under /v1: does {OPENAI_BASE_URL} "
            "need to end in /v1?"
        )
        return f"{self._where}: 404 Not Found from {url} ({exc.message}){hint}"

    def embed(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        for start in range(0, len(texts), self._request_batch):
            batch = texts[start : start + self._request_batch]
            out[start : start + len(batch)] = self._embed_batch(batch)
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    def _embed_batch(self, batch: list[str]) -> np.ndarray:
        attempt = 1
        while True:
            try:
                response = self._client.embeddings.create(
                    model=self._model,
                    input=batch,
                    dimensions=self.dimensions if self._model in _DIMENSIONS_PARAMETER else omit,
                )
            except NotFoundError as exc:
                raise EmbeddingReplyError(self._not_found(exc)) from exc
            by_index = {item.index: item.embedding for item in response.data}
            vectors = [by_index[i] for i in range(len(batch)) if i in by_index]
            problem = (
                f"received {len(response.data)} embeddings with indexes missing or repeated"
                if len(by_index) != len(response.data) or len(vectors) != len(response.data)
                else reply_problem(vectors, len(batch), self.dimensions)
            )
            if problem is None:
                return np.asarray(vectors, dtype=np.float32)
            message = f"{self._where}: {expectation(len(batch), self.dimensions)}, {problem}"
            if attempt >= self._reply_attempts:
                raise EmbeddingReplyError(f"{message} (after {attempt} attempts)")
            log.warning("%s; asking again", message)
            time.sleep(self._retry_seconds * 2 ** (attempt - 1))
            attempt += 1
