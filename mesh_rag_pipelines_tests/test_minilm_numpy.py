"""The NumPy encoder that embeds queries gives the vectors the indexing model gives."""

from __future__ import annotations

import numpy as np

from mesh_rag_pipelines.contracts import EmbeddingSpec
from mesh_rag_pipelines.embedding import Embedder
from mesh_rag_pipelines.embedding.minilm_numpy import MAX_TOKENS, NumpyMiniLM

TEXTS = [
    "How many weeks of paid leave does a primary caregiver get after a birth?",
    "hotel cap in New York",
    "Émigré café naïve résumé: accents, and 日本語 too",
    " ".join(["tent"] * (MAX_TOKENS + 50)),  # longer than the model reads: truncated alike
    "a",
]


def test_query_vectors_equal_the_indexing_models(minilm: Embedder) -> None:
    spec = EmbeddingSpec(model="all-MiniLM-L6-v2", dimensions=384)
    light = NumpyMiniLM(spec)
    assert light.model_id == minilm.model_id
    np.testing.assert_allclose(light.embed(TEXTS), minilm.embed(TEXTS), atol=1e-6)
