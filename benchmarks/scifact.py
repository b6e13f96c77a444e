"""SciFact retrieval quality through the real pipeline: build the product, then score the 300
test queries with nDCG@10 and recall@100, through HNSW (`retrieval.search`) and by exact search
in PostgreSQL, so that index loss and chunking loss show apart.

Reference (exact search, whole documents truncated at 256 word pieces): nDCG@10 0.64508,
recall@100 0.925.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from sqlalchemy import Engine, text

from benchmarks import results, scifact_product
from benchmarks.database import benchmark_database
from benchmarks.scifact_product import ChunkingChoice
from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.embedding import Embedder, embedder_for
from mesh_rag_pipelines.retrieval import Caller, search
from mesh_rag_pipelines.retrieval.evaluation import mean_scores, rank_documents
from mesh_rag_pipelines.store.database import engine_for
from mesh_rag_pipelines.store.index_versions import live_versions
from mesh_rag_pipelines.store.schema import SCHEMA

# The contract's default chunking: whole paragraphs packed to 180 words with 20 words carried
# over. RESULTS.md explains the choice against the other settings of the sweep.
CHOSEN = ChunkingChoice("paragraphs", 180, 20)
SWEEP = [CHOSEN, ChunkingChoice("paragraphs", 400, 0), ChunkingChoice("paragraphs", 120, 20)]
CHUNKS_RETRIEVED = 1000  # enough chunks to rank well over 100 documents
EF_SEARCH = (100, 400)


def run(argv: list[str]) -> dict:
    parser = argparse.ArgumentParser(prog="scifact")
    parser.add_argument("--sweep", action="store_true", help="also try other chunking settings")
    parser.add_argument("--limit", type=int, help="first N documents only (a smoke test)")
    args = parser.parse_args(argv)
    choices = SWEEP if args.sweep else [CHOSEN]
    queries, qrels = scifact_product.load_test_queries()
    details: dict = {"settings": {}}
    with benchmark_database() as url, tempfile.TemporaryDirectory() as folder:
        engine = engine_for(url)
        scifact_product.create_source_table(engine, scifact_product.load_corpus(args.limit))
        embedder = embedder_for(scifact_product.write_contract(Path(folder), CHOSEN).embedding)
        for choice in choices:
            contract = scifact_product.write_contract(Path(folder), choice)
            build = scifact_product.timed_build(engine, contract, embedder)
            efs = EF_SEARCH if choice == CHOSEN else EF_SEARCH[:1]
            scores = evaluate(engine, contract, embedder, queries, qrels, efs)
            scores["build"] = build.__dict__
            details["settings"][choice.product_name] = scores
            print(f"{choice.product_name}: {scores}", flush=True)
        details["server"] = server_versions(engine)
        engine.dispose()
    chosen = details["settings"][CHOSEN.product_name]
    figures = {
        "scifact_ndcg10": round(chosen["hnsw"][str(EF_SEARCH[0])]["ndcg10"], 5),
        "scifact_recall100": round(chosen["hnsw"][str(EF_SEARCH[0])]["recall100"], 5),
        "scifact_ndcg10_exact_pg": round(chosen["exact_pg"]["ndcg10"], 5),
    }
    details["chosen"] = CHOSEN.product_name
    results.record_details("scifact", details)
    return figures


def evaluate(
    engine: Engine,
    contract: DataProductContract,
    embedder: Embedder,
    queries: dict[str, str],
    qrels: dict[str, dict[str, int]],
    efs: tuple[int, ...] = EF_SEARCH,
) -> dict:
    """Scores through HNSW at each ef_search, and by exact search in PostgreSQL."""
    scores: dict = {"hnsw": {}}
    for ef in efs:
        started = time.perf_counter()
        rankings = {
            query_id: rank_documents(
                (hit.doc_id, hit.score)
                for hit in search(
                    engine,
                    [contract],
                    query,
                    Caller.of_product(contract),
                    k=CHUNKS_RETRIEVED,
                    embedders={embedder.model_id: embedder},
                    ef_search=ef,
                )
            )
            for query_id, query in queries.items()
        }
        scores["hnsw"][str(ef)] = mean_scores(rankings, qrels)
        scores["hnsw"][str(ef)]["seconds"] = time.perf_counter() - started
    vectors = embedder.embed(list(queries.values()))
    exact = exact_search(engine, contract, dict(zip(queries, vectors, strict=True)))
    scores["exact_pg"] = mean_scores(exact, qrels)
    return scores


def exact_search(
    engine: Engine, contract: DataProductContract, vectors: dict[str, np.ndarray]
) -> dict[str, list[str]]:
    """Brute force over the live version's table: with index scans off, PostgreSQL computes
    every distance and keeps the top chunks."""
    version = live_versions(engine, [contract.name])[0]
    query = text(
        f"SELECT doc_id, 1 - (embedding <=> CAST(:q AS vector)) AS score "
        f"FROM {SCHEMA}.{version.table_name} "
        f"ORDER BY embedding <=> CAST(:q AS vector) LIMIT {CHUNKS_RETRIEVED}"
    )
    rankings = {}
    with engine.begin() as conn:
        conn.execute(text("SET LOCAL enable_indexscan = off"))
        first = _literal(next(iter(vectors.values())))
        plan = " ".join(row[0] for row in conn.execute(text(f"EXPLAIN {query}"), {"q": first}))
        assert "hnsw" not in plan.lower(), plan
        for query_id, vector in vectors.items():
            rows = conn.execute(query, {"q": _literal(vector)})
            rankings[query_id] = rank_documents((row.doc_id, row.score) for row in rows)
    return rankings


def _literal(vector: np.ndarray) -> str:
    return "[" + ",".join(repr(float(x)) for x in vector) + "]"


def server_versions(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        return {
            "postgresql": conn.execute(text("SHOW server_version")).scalar_one(),
            "pgvector": conn.execute(
                text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
            ).scalar_one(),
            "shared_buffers": conn.execute(text("SHOW shared_buffers")).scalar_one(),
        }
