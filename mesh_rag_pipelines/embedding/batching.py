"""Queries of concurrent requests embedded together.

A query's embedding costs mostly reading the model's weights (MiniLM: 90 MB, about 25 ms on a
core here, whatever the query's length); a batch reads them once. The first request to arrive
runs the model on every query waiting, its own included, while the others wait for their
vectors; queries arriving meanwhile form the next batch. Nothing waits for a batch to fill: an
idle service embeds each query at once.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future

import numpy as np

from mesh_rag_pipelines.embedding.embedder import Embedder


class BatchingEmbedder:
    """An Embedder whose concurrent callers share model passes."""

    def __init__(self, embedder: Embedder):
        self.model_id = embedder.model_id
        self.dimensions = embedder.dimensions
        self._embedder = embedder
        self._waiting: list[tuple[list[str], Future[np.ndarray]]] = []
        self._running = False
        self._turn = threading.Condition()

    def embed(self, texts: list[str]) -> np.ndarray:
        mine: Future[np.ndarray] = Future()
        with self._turn:
            self._waiting.append((texts, mine))
            while self._running and not mine.done():
                self._turn.wait()
            if mine.done():
                return mine.result()
            self._running = True
            batch, self._waiting = self._waiting, []
        try:
            self._run(batch)
        finally:
            with self._turn:
                self._running = False
                self._turn.notify_all()
        return mine.result()

    def _run(self, batch: list[tuple[list[str], Future[np.ndarray]]]) -> None:
        try:
            vectors = self._embedder.embed([text for texts, _ in batch for text in texts])
        except BaseException as exc:  # every caller of the batch gets the model's error
            for _, waiting in batch:
                waiting.set_exception(exc)
            return
        start = 0
        for texts, waiting in batch:
            waiting.set_result(vectors[start : start + len(texts)])
            start += len(texts)
