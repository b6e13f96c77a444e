"""Index releases of the SciFact product, measured through the command line a data engineer runs
(`mesh-rag build`, `mesh-rag release swap`), each a process of its own like a run worker.

1. Blue: the product is built with all-MiniLM-L6-v2 (setup).
2. Idle: a separate process queries the product (`retrieval.search`, the query embedded each
   time, a short pause between queries, like a serving application) for a while.
3. Model-change backfill: the contract's model revision changes, so every text is new to the
   model. Floor (one `encode` call over the product's distinct chunk texts, in this process),
   then `mesh-rag build --product` (every shard: bulk load without HNSW, the index built once
   when the version is complete, then the release step validates it), then the floor again.
4. Swap: `mesh-rag release swap`, and swap/rollback cycles in this process (the transaction
   alone, median).
5. Backfill under load: another revision, built while the query process runs; the build runs
   at the lowest CPU priority (`nice`), as a run worker on other machines would leave the
   serving side its CPU: on two shared cores the model would otherwise starve the queries'
   own embedding. Queries during the build against idle: p99 ratio, failed queries.
6. Chunker-only change: texts embedded by the build (rows the cache gained) against the chunk
   texts the cache lacked before it (computed from document state with the chunker alone).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine, select, text

from benchmarks import results, scifact_product
from benchmarks.database import benchmark_database
from benchmarks.scifact import CHOSEN, server_versions
from mesh_rag_pipelines.chunking import chunk_document, text_hash
from mesh_rag_pipelines.contracts import DataProductContract, load_contract
from mesh_rag_pipelines.embedding import embedder_for
from mesh_rag_pipelines.releases import rollback, swap
from mesh_rag_pipelines.store.database import engine_for
from mesh_rag_pipelines.store.index_versions import index_version_id
from mesh_rag_pipelines.store.schema import SCHEMA, EmbeddingCache

MESH_RAG = str(Path(sys.executable).parent / "mesh-rag")
IDLE_SECONDS = int(os.environ.get("MESH_RAG_BENCH_IDLE_SECONDS", "60"))
SWAP_CYCLES = 10
QUERY_PAUSE_SECONDS = 0.05


def run(argv: list[str]) -> dict:
    parser = argparse.ArgumentParser(prog="release")
    parser.add_argument("--limit", type=int, help="first N documents only (a smoke test)")
    args = parser.parse_args(argv)
    docs = scifact_product.load_corpus(args.limit)
    details: dict[str, Any] = {"documents": len(docs)}
    with benchmark_database() as url, tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        engine = engine_for(url)
        scifact_product.create_source_table(engine, docs)
        contract = scifact_product.write_contract(folder, CHOSEN)
        env = cli_env(url, folder)
        details["blue_build_seconds"] = _cli(env, "build", "--product", contract.name)

        queries = _QueryLoad(url, folder, contract.name)
        time.sleep(IDLE_SECONDS)
        idle = queries.stop()

        green = _revised(folder, contract, "2")
        details["backfill"] = _backfill_against_floor(engine, env, green)
        details["swap_cli_seconds"] = _cli(env, "release", "swap", "--product", green.name)
        details["swap_ms"] = _swap_cycles(engine, green.name, index_version_id(green))

        third = _revised(folder, green, "3")
        queries = _QueryLoad(url, folder, contract.name)
        started = time.time()
        details["loaded_build_seconds"] = _cli(env, "build", "--product", third.name, nice=True)
        during = queries.stop(since=started)

        details["chunker_change"] = _chunker_change(engine, env, folder, third)
        details["queries"] = {"idle": _latencies(idle), "during_backfill": _latencies(during)}
        details["server"] = server_versions(engine)
        engine.dispose()
    results.record_details("release", details)
    failed = sum(1 for r in idle + during if r["error"])
    return {
        "release_backfill_floor_ratio": round(details["backfill"]["ratio"], 4),
        "release_chunker_texts_embedded": details["chunker_change"]["texts_embedded"],
        "release_chunker_new_texts": details["chunker_change"]["new_texts"],
        "release_swap_ms": round(details["swap_ms"]["median"], 2),
        "release_query_p99_ratio": round(
            details["queries"]["during_backfill"]["p99_ms"] / details["queries"]["idle"]["p99_ms"],
            3,
        ),
        "release_failed_queries": failed,
    }


def cli_env(url: str, folder: Path) -> dict[str, str]:
    return {
        **os.environ,
        "MESH_RAG_DATABASE_URL": url,
        "MESH_RAG_CONTRACTS_DIR": str(folder),
        "DAGSTER_HOME": str(folder),
    }


def timed_cli(env: dict[str, str], *args: str, nice: bool = False) -> tuple[float, str]:
    """Run `mesh-rag ARGS` to completion, as a process of its own; its wall time and output."""
    command = [MESH_RAG, *args]
    if nice:
        command = ["nice", "-n", "19", *command]
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    print(f"mesh-rag {' '.join(args)}: {seconds:.1f}s\n{done.stdout[-600:]}", flush=True)
    if done.returncode != 0:
        raise RuntimeError(f"mesh-rag {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return seconds, done.stdout


def _cli(env: dict[str, str], *args: str, nice: bool = False) -> float:
    return timed_cli(env, *args, nice=nice)[0]


def _revised(folder: Path, contract: DataProductContract, revision: str) -> DataProductContract:
    """The same product with another model revision: every text is new to the model."""
    path = folder / f"{contract.name}.yaml"
    source = path.read_text()
    if "revision:" in source:
        source = source.replace(
            f'revision: "{contract.embedding.revision}"', f'revision: "{revision}"'
        )
    else:
        source = source.replace("distance: cosine", f'distance: cosine\n  revision: "{revision}"')
    path.write_text(source)
    return load_contract(path)


def distinct_texts(engine: Engine, contract: DataProductContract) -> list[str]:
    with engine.connect() as conn:
        documents = conn.execute(
            text(
                f"SELECT title, content FROM {SCHEMA}.document_state "
                "WHERE product = :p AND NOT deleted"
            ),
            {"p": contract.name},
        ).all()
    return sorted(
        {
            chunk.text
            for doc in documents
            for chunk in chunk_document(contract.chunking, doc.title, doc.content)
        }
    )


def _backfill_against_floor(
    engine: Engine, env: dict[str, str], contract: DataProductContract
) -> dict[str, Any]:
    texts = distinct_texts(engine, contract)
    embedder = embedder_for(contract.embedding)
    embedder.embed(texts[:256])  # warm-up
    floors = [embedding_floor(embedder, texts)]
    backfill = _cli(env, "build", "--product", contract.name)
    floors.append(embedding_floor(embedder, texts))
    return {
        "texts": len(texts),
        "floor_seconds": floors,
        "backfill_seconds": backfill,
        "ratio": backfill / statistics.mean(floors),
        "ratio_per_floor": [backfill / floor for floor in floors],
    }


def embedding_floor(embedder: Any, texts: list[str]) -> float:
    """One call over every text: what embedding them costs at the least."""
    started = time.perf_counter()
    embedder.embed(texts)
    return time.perf_counter() - started


def _swap_cycles(engine: Engine, product: str, version: str) -> dict[str, float]:
    """The swap transaction alone: rollback and swap again, timed by the release module."""
    timings = []
    for _ in range(SWAP_CYCLES):
        timings.append(rollback(engine, product, actor="benchmark").seconds * 1000)
        timings.append(swap(engine, product, version, actor="benchmark").seconds * 1000)
    return results.spread(timings)


def _chunker_change(
    engine: Engine, env: dict[str, str], folder: Path, contract: DataProductContract
) -> dict[str, int]:
    path = folder / f"{contract.name}.yaml"
    path.write_text(path.read_text().replace("max_words: 180", "max_words: 120"))
    changed = load_contract(path)
    model_id = changed.embedding.model_id
    cached = _cached_hashes(engine, model_id)
    needed = {text_hash(t) for t in distinct_texts(engine, changed)}
    before = len(cached)
    _cli(env, "build", "--product", changed.name)
    return {
        "new_texts": len(needed - cached),
        "texts_embedded": len(_cached_hashes(engine, model_id)) - before,
        "texts_of_the_new_chunker": len(needed),
    }


def _cached_hashes(engine: Engine, model_id: str) -> set[str]:
    with engine.connect() as conn:
        query = select(EmbeddingCache.text_hash).where(EmbeddingCache.model_id == model_id)
        return set(conn.execute(query).scalars())


class _QueryLoad:
    """A process querying the product until stopped; its records (see query_loop)."""

    def __init__(self, url: str, folder: Path, product: str):
        self.log = folder / f"queries-{time.time_ns()}.jsonl"
        self.stop_file = folder / f"stop-{time.time_ns()}"
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mesh_rag_pipelines_tests.query_loop",
                url,
                str(folder),
                product,
                str(self.log),
                str(self.stop_file),
                str(QUERY_PAUSE_SECONDS),
            ]
        )
        while not self.log.exists() or len(self.log.read_text().splitlines()) < 20:
            time.sleep(0.5)  # model loaded and warm before anything is measured

    def stop(self, since: float = 0.0) -> list[dict[str, Any]]:
        self.stop_file.touch()
        self.process.wait(timeout=120)
        records = [json.loads(line) for line in self.log.read_text().splitlines()]
        return [r for r in records[20:] if r["at"] >= since]


def _latencies(records: list[dict[str, Any]]) -> dict[str, float]:
    ok = [r["seconds"] * 1000 for r in records if not r["error"]]
    return {
        "queries": len(records),
        "failed": sum(1 for r in records if r["error"]),
        "p50_ms": float(np.percentile(ok, 50)),
        "p99_ms": float(np.percentile(ok, 99)),
    }
