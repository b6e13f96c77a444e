"""Retrieval under row-level security, 100k chunks: recall@10 and latency for callers whose
groups cover 1%, 10% and 50% of the rows.

An index-version table is made and protected exactly as a release makes one (the serving role's
policy on `acl_groups && caller_groups()`), loaded with the synthetic vectors of the latency
benchmark (row i in one of 100 groups, `i % 100`), indexed (HNSW with the contract defaults, GIN
on the groups), and queried with the SQL `retrieval.search` issues, as the serving role with the
caller's groups set for the transaction, and the scan `retrieval.planning` plans (the graph
with a breadth widened for the caller's share of rows, or exact distances over the readable rows
when few). Recall is against the exact top 10 among
the rows the caller may read. Filtered HNSW is where recall silently collapses: the policy is a
filter the graph walk must satisfy, so these are the figures to watch. Each share is also
measured with either scan forced at the contract's ef_search, which is what the plan rests on.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sqlalchemy import Engine, select, text

from benchmarks import results
from benchmarks.database import benchmark_database
from benchmarks.latency import (
    PASSES,
    QUERIES,
    WARM_UP,
    build_indexes,
    group_name,
    load,
    row_key,
)
from benchmarks.scifact import server_versions
from benchmarks.synthetic_vectors import GaussianMixture, exact_top_k
from mesh_rag_pipelines.contracts.model import IndexSpec
from mesh_rag_pipelines.governance.access import act_as_caller, protect_index_table
from mesh_rag_pipelines.retrieval.planning import plan_scan
from mesh_rag_pipelines.store.database import engine_for
from mesh_rag_pipelines.store.schema import hnsw_index, index_table

GROUPS = 100
SHARES = (1, 10, 50)  # percent of rows the caller's groups cover


def run(argv: list[str]) -> dict:
    parser = argparse.ArgumentParser(prog="rls")
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args(argv)
    spec = IndexSpec()
    details: dict = {"rows": args.rows, "groups": GROUPS, "index": spec.model_dump()}
    with benchmark_database() as url:
        engine = engine_for(url)
        mixture = GaussianMixture()
        table = index_table("rls_synthetic", 384, "cosine")
        with engine.begin() as conn:
            table.create(conn)
            protect_index_table(conn, table.name)
        vectors = load(engine, table.name, mixture, args.rows, GROUPS)
        # The table's own indexes (GIN on the groups) came with it; the graph is built once,
        # after the load, as a release builds it.
        hnsw = hnsw_index(table.name, 384, "cosine", spec.m, spec.ef_construction)
        details["build"] = build_indexes(engine, table, [hnsw])
        if not details["build"]["built"]:
            raise RuntimeError(f"index build failed: {details['build']}")
        queries = mixture.sample(QUERIES + WARM_UP)
        owners = np.arange(args.rows) % GROUPS
        for share in SHARES:
            for scan in ("chosen", "graph", "exact"):
                outcome = _query_set(
                    engine, table, vectors, queries, owners, share, spec.ef_search, scan
                )
                key = f"{share}pct" if scan == "chosen" else f"{share}pct_{scan}"
                details[key] = outcome
                print(f"{share}% of rows, {scan}: {outcome}", flush=True)
        details["server"] = server_versions(engine)
        engine.dispose()
    results.record_details("rls", details)
    figures: dict = {}
    for share in SHARES:
        figures[f"rls_recall10_{share}pct"] = round(details[f"{share}pct"]["recall10"], 4)
        figures[f"rls_p99_ms_{share}pct"] = round(details[f"{share}pct"]["p99_ms"]["median"], 2)
    return figures


def _query_set(
    engine: Engine, table, vectors, queries, owners, share: int, ef: int, scan: str
) -> dict:  # type: ignore[no-untyped-def]
    groups = [group_name(g) for g in range(share)]
    truth = exact_top_k(vectors, queries[WARM_UP:], 10, owners < share)
    distance = table.c.embedding.cosine_distance
    latencies: list[list[float]] = []
    recalls = []
    chosen: set[str] = set()
    for number in range(PASSES):
        timings = []
        for position, vector in enumerate(queries):
            query = select(table, distance(vector).label("distance"))
            query = query.order_by(distance(vector)).limit(10)
            started = time.perf_counter()
            with engine.begin() as conn:
                act_as_caller(conn, groups)
                if scan == "chosen":
                    planned = plan_scan(conn, table.name, ef)
                    chosen.add(f"{planned.kind} (ef_search {planned.ef_search})")
                else:
                    _force(conn, scan)
                    conn.execute(
                        text(
                            "SELECT set_config('hnsw.ef_search', :ef, true), "
                            "set_config('hnsw.iterative_scan', 'relaxed_order', true)"
                        ),
                        {"ef": str(ef)},
                    )
                found = conn.execute(query).all()
            elapsed = (time.perf_counter() - started) * 1000
            if position < WARM_UP:
                continue
            timings.append(elapsed)
            if number == 0:
                expected = {row_key(r) for r in truth[position - WARM_UP]}
                recalls.append(len(expected & {(r.doc_id, r.chunk_no) for r in found}) / 10)
        latencies.append(timings)
    return {
        "caller_groups": len(groups),
        "scan": ", ".join(sorted(chosen)) or scan,
        "recall10": float(np.mean(recalls)),
        "p50_ms": results.spread([float(np.percentile(t, 50)) for t in latencies]),
        "p99_ms": results.spread([float(np.percentile(t, 99)) for t in latencies]),
    }


def _force(conn, scan: str) -> None:  # type: ignore[no-untyped-def]
    settings = ["enable_indexscan"] if scan == "exact" else ["enable_bitmapscan", "enable_seqscan"]
    for setting in settings:
        conn.execute(text(f"SELECT set_config('{setting}', 'off', true)"))
