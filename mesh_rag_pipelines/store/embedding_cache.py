"""Vectors already computed, by (model id, text hash).

Vectors travel in pgvector's binary form both ways (COPY in, `vector_send` out): parsing the
text form of 384 floats per row costs more than the rest of a cache read.
"""

from __future__ import annotations

import numpy as np
from sqlalchemy import Engine, func, select

from mesh_rag_pipelines.store.binary_copy import copy_payload, encode_text, encode_vector
from mesh_rag_pipelines.store.schema import SCHEMA, EmbeddingCache


def cached_vectors(engine: Engine, model_id: str, hashes: list[str]) -> dict[str, np.ndarray]:
    if not hashes:
        return {}
    query = select(
        EmbeddingCache.text_hash, func.vector_send(EmbeddingCache.embedding).label("binary")
    ).where(EmbeddingCache.model_id == model_id, EmbeddingCache.text_hash.in_(sorted(set(hashes))))
    with engine.connect() as conn:
        return {row.text_hash: _decode_vector(row.binary) for row in conn.execute(query)}


def _decode_vector(binary: bytes) -> np.ndarray:
    """pgvector's binary form: int16 dimensions, int16 unused, then big-endian float4."""
    return np.frombuffer(binary, dtype=">f4", offset=4).astype(np.float32)


def store_vectors(engine: Engine, model_id: str, vectors: dict[str, np.ndarray]) -> None:
    """Binary COPY into a temporary table, then one INSERT ... ON CONFLICT DO NOTHING."""
    if not vectors:
        return
    payload = copy_payload(
        (encode_text(model_id), encode_text(text_hash), encode_vector(vector))
        for text_hash, vector in vectors.items()
    )
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute(
            "CREATE TEMP TABLE cache_in (model_id text, text_hash text, "
            "embedding vector) ON COMMIT DROP"
        )
        cur.copy_expert("COPY cache_in FROM STDIN (FORMAT binary)", payload)  # type: ignore[attr-defined]
        cur.execute(
            f"INSERT INTO {SCHEMA}.embedding_cache (model_id, text_hash, embedding) "
            "SELECT model_id, text_hash, embedding FROM cache_in "
            "ON CONFLICT DO NOTHING"
        )
        cur.close()
        raw.commit()
    finally:
        raw.close()
