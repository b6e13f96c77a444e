"""Embedding replies are checked before anything uses them.

A provider may answer 200 with fewer vectors than inputs, vectors of another dimension, NaN or
an all-zero vector. Stored, such a vector would be served (and cached) for good, so every reply
is checked: one finite, non-zero vector of the expected dimension per input.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class EmbeddingReplyError(RuntimeError):
    """An embedding reply that cannot be used; the message says what was expected and received."""


def reply_problem(
    vectors: Sequence[Sequence[float]] | np.ndarray, count: int, dimensions: int
) -> str | None:
    """What is wrong with `vectors` as the embeddings of `count` inputs, or None."""
    if len(vectors) != count:
        return f"received {len(vectors)} embeddings"
    for index, vector in enumerate(vectors):
        if len(vector) != dimensions:
            return f"received an embedding of {len(vector)} dimensions at index {index}"
    array = np.asarray(vectors, dtype=np.float64)
    finite = np.isfinite(array).all(axis=1) if count else np.array([], dtype=bool)
    if not finite.all():
        return f"received a non-finite value in the embedding at index {int(np.argmin(finite))}"
    norms = np.linalg.norm(array, axis=1)
    if count and (norms == 0).any():
        return f"received an all-zero embedding at index {int(np.argmin(norms))}"
    return None


def expectation(count: int, dimensions: int) -> str:
    return f"expected {count} embeddings of {dimensions} dimensions"
