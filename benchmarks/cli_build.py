"""A full build through the command line a data engineer runs, against the embedding floor.

The SciFact product (its first `--limit` documents, 3,633 by default) is built by `mesh-rag
build` in a process of its own (every shard's run, recorded in a Dagster instance), on an empty
store: every chunk text is new to the model. The floor is one `encode` call over the same
distinct chunk texts in this process, measured before and after the build (interleaved, so
machine load drifts into both). Then `mesh-rag build` again: a no-op, whose runs' own times
(as the command prints them) show what a run with nothing to do costs.
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
from pathlib import Path
from typing import Any

from benchmarks import results, scifact_product
from benchmarks.database import benchmark_database
from benchmarks.release import (
    cli_env,
    distinct_texts,
    embedding_floor,
    timed_cli,
)
from benchmarks.scifact import CHOSEN
from mesh_rag_pipelines.chunking import chunk_document
from mesh_rag_pipelines.embedding import embedder_for
from mesh_rag_pipelines.store.database import engine_for

RUN_LINE = re.compile(r"^(sync_\S+ shard \d+): ok in ([0-9.]+)s$", re.MULTILINE)


def run(argv: list[str]) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="cli_build")
    parser.add_argument("--limit", type=int, default=3633, help="first N SciFact documents")
    args = parser.parse_args(argv)
    docs = scifact_product.load_corpus(args.limit)
    with benchmark_database() as url, tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        engine = engine_for(url)
        scifact_product.create_source_table(engine, docs)
        contract = scifact_product.write_contract(folder, CHOSEN)
        texts = sorted(
            {
                chunk.text
                for doc in docs
                for chunk in chunk_document(contract.chunking, doc["title"], doc["text"])
            }
        )
        embedder = embedder_for(contract.embedding)
        embedder.embed(texts[:256])  # warm-up: the floor is the model's steady state
        env = cli_env(url, folder)
        floors = [embedding_floor(embedder, texts)]
        print(f"floor: {floors[0]:.1f}s for {len(texts)} texts", flush=True)
        build_seconds, build_output = timed_cli(env, "build", "--product", contract.name)
        floors.append(embedding_floor(embedder, texts))
        print(f"build: {build_seconds:.1f}s; floor again: {floors[1]:.1f}s", flush=True)
        same_texts = distinct_texts(engine, contract) == texts
        noop_seconds, noop_output = timed_cli(env, "build", "--product", contract.name)
        engine.dispose()
    noop_runs = [float(seconds) for _, seconds in RUN_LINE.findall(noop_output)]
    details = {
        "documents": len(docs),
        "texts": len(texts),
        "floor_texts_equal_stored_chunk_texts": same_texts,
        "floor_seconds": floors,
        "build_seconds": build_seconds,
        "build_runs": RUN_LINE.findall(build_output),
        "ratio_per_floor": [build_seconds / floor for floor in floors],
        "noop_build_seconds": noop_seconds,
        "noop_runs_seconds": noop_runs,
        "machine": results.machine(),
    }
    results.record_details("cli_build", details)
    return {
        "cli_build_floor_ratio": round(build_seconds / statistics.mean(floors), 4),
        "cli_noop_run_seconds_median": round(statistics.median(noop_runs), 3),
    }
