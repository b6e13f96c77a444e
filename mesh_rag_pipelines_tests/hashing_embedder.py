"""Test double: a deterministic hashing embedder, not a model.

Each text maps to a unit vector drawn from a generator seeded by the text's SHA-256, so the same
text gets the same vector in every process and different texts almost surely get different
ones. The vectors mean nothing; the embedder exists so that the randomized differential test can
run hundreds of sequences in seconds. Every other test uses the real local model.
"""

from __future__ import annotations

import hashlib

import numpy as np


class HashingEmbedder:
    """Satisfies the `Embedder` protocol; remembers every text it was asked to embed."""

    def __init__(self, model_id: str, dimensions: int):
        self.model_id = model_id
        self.dimensions = dimensions
        self.texts_seen: list[str] = []

    def embed(self, texts: list[str]) -> np.ndarray:
        self.texts_seen.extend(texts)
        vectors = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        for row, text in enumerate(texts):
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
            vector = np.random.default_rng(seed).standard_normal(self.dimensions)
            vectors[row] = vector / np.linalg.norm(vector)
        return vectors
