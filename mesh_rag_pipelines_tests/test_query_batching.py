"""Concurrent queries share model passes and each gets its own vector, the one it would get
alone; a model's failure reaches every caller of its batch."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from mesh_rag_pipelines.contracts import EmbeddingSpec
from mesh_rag_pipelines.embedding.batching import BatchingEmbedder
from mesh_rag_pipelines.embedding.minilm_numpy import NumpyMiniLM

CALLERS = 16


class Counted:
    """The real NumPy encoder, counting the model passes it is asked for."""

    def __init__(self, spec: EmbeddingSpec, fail: bool = False):
        self._inner = NumpyMiniLM(spec)
        self.model_id, self.dimensions = self._inner.model_id, self._inner.dimensions
        self.passes: list[int] = []
        self._fail = fail

    def embed(self, texts: list[str]) -> np.ndarray:
        self.passes.append(len(texts))
        if self._fail:
            raise RuntimeError("the model is gone")
        return self._inner.embed(texts)


def _concurrently(embedder: BatchingEmbedder, texts: list[str]) -> list[object]:
    results: list[object] = [None] * len(texts)
    start = threading.Barrier(len(texts))

    def call(position: int) -> None:
        start.wait()
        try:
            results[position] = embedder.embed([texts[position]])
        except RuntimeError as exc:
            results[position] = exc

    threads = [threading.Thread(target=call, args=(n,)) for n in range(len(texts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_concurrent_queries_share_passes_and_get_their_own_vectors() -> None:
    spec = EmbeddingSpec(model="all-MiniLM-L6-v2", dimensions=384)
    texts = [f"question {n}: how long is {'very ' * n}long parental leave?" for n in range(CALLERS)]
    counted = Counted(spec)
    results = _concurrently(BatchingEmbedder(counted), texts)
    alone = NumpyMiniLM(spec)
    for text, vector in zip(texts, results, strict=True):
        assert isinstance(vector, np.ndarray) and vector.shape == (1, 384)
        np.testing.assert_allclose(vector, alone.embed([text]), atol=1e-6)
    assert sum(counted.passes) == CALLERS
    assert len(counted.passes) < CALLERS  # at least one pass served several callers


def test_a_failed_pass_fails_each_of_its_callers() -> None:
    spec = EmbeddingSpec(model="all-MiniLM-L6-v2", dimensions=384)
    counted = Counted(spec, fail=True)
    results = _concurrently(BatchingEmbedder(counted), [f"q{n}" for n in range(4)])
    assert [str(r) for r in results] == ["the model is gone"] * 4
    with pytest.raises(RuntimeError, match="the model is gone"):
        BatchingEmbedder(counted).embed(["alone"])
