"""Synthetic but structured 384-d vectors for retrieval latency: a Gaussian mixture.

Real sentence embeddings are clustered and have a low intrinsic dimension, unlike uniform noise
(on which every neighbour is nearly as far as any other and HNSW looks worse than it is). So:
300 cluster centres drawn uniformly on the sphere, cluster sizes from a Dirichlet(1) draw; each
point is its centre plus a Gaussian in a cluster-specific 24-d subspace (scales falling from
0.25 to 0.05) plus isotropic noise of total norm 0.15, then normalized. Queries are fresh draws from
the same mixture. A point's cosine to its centre is ~0.8, to a random other point ~0.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

DIMENSIONS = 384
CLUSTERS = 300
SUBSPACE = 24


class GaussianMixture:
    def __init__(self, seed: int = 11):
        rng = np.random.default_rng(seed)
        self._rng = rng
        self.centres = _normalized(rng.standard_normal((CLUSTERS, DIMENSIONS)))
        self.weights = rng.dirichlet(np.ones(CLUSTERS))
        scales = np.linspace(0.25, 0.05, SUBSPACE)[:, None]
        self.bases = [
            np.linalg.qr(rng.standard_normal((DIMENSIONS, SUBSPACE)))[0].T * scales
            for _ in range(CLUSTERS)
        ]

    def sample(self, count: int) -> np.ndarray:
        clusters = self._rng.choice(len(self.centres), size=count, p=self.weights)
        points = np.empty((count, DIMENSIONS), dtype=np.float32)
        for cluster in np.unique(clusters):
            rows = np.flatnonzero(clusters == cluster)
            local = self._rng.standard_normal((len(rows), SUBSPACE)) @ self.bases[cluster]
            noise = self._rng.standard_normal((len(rows), DIMENSIONS)) * (0.15 / DIMENSIONS**0.5)
            points[rows] = self.centres[cluster] + local + noise
        return _normalized(points).astype(np.float32)

    def batches(self, count: int, batch: int = 50_000) -> Iterator[np.ndarray]:
        for start in range(0, count, batch):
            yield self.sample(min(batch, count - start))


def _normalized(points: np.ndarray) -> np.ndarray:
    return points / np.linalg.norm(points, axis=1, keepdims=True)


def exact_top_k(
    vectors: np.ndarray, queries: np.ndarray, k: int, mask: np.ndarray | None = None
) -> np.ndarray:
    """Row numbers of the k nearest rows by cosine (vectors are unit length), per query."""
    scores = queries @ vectors.T
    if mask is not None:
        scores[:, ~mask] = -np.inf
    top = np.argpartition(-scores, k, axis=1)[:, :k]
    order = np.take_along_axis(scores, top, axis=1).argsort(axis=1)[:, ::-1]
    return np.take_along_axis(top, order, axis=1)


class AroundVectors(GaussianMixture):
    """The same mixture around given unit vectors (real embeddings) as its centres, equally
    weighted: real text queries then land among the points as they would among a large corpus
    of similar texts."""

    def __init__(self, centres: np.ndarray, seed: int = 13):
        rng = np.random.default_rng(seed)
        self._rng = rng
        self.centres = _normalized(np.asarray(centres, dtype=np.float32))
        self.weights = np.full(len(self.centres), 1 / len(self.centres))
        scales = np.linspace(0.25, 0.05, SUBSPACE)[:, None]
        self.bases = [
            np.linalg.qr(rng.standard_normal((DIMENSIONS, SUBSPACE)))[0].T * scales
            for _ in range(len(self.centres))
        ]
