"""Retrieval latency and recall@10 against exact search, at 100k and 1M chunks.

Synthetic vectors (see `synthetic_vectors`) are COPYed in binary into a table of the same shape
as an index version's, then the HNSW and ACL (GIN) indexes are built on the loaded table, with
the parameters a contract's `index` section sets (`--m`, `--ef-construction`; default m=16,
ef_construction=64) and built as a release builds them. Queries are the SQL that
`retrieval.search` issues: every column plus the distance, ORDER BY distance LIMIT 10, the
version's ef_search and `hnsw.iterative_scan = relaxed_order`, optionally with an ACL filter
that passes 10% of rows (each row has one of ten groups). Latency is measured at the client,
SQLAlchemy included.
"""

from __future__ import annotations

import argparse
import re
import time
from datetime import UTC, datetime

import numpy as np
from sqlalchemy import Engine, Index, select, text
from sqlalchemy.dialects.postgresql import array

from benchmarks import results
from benchmarks.database import benchmark_database
from benchmarks.scifact import server_versions
from benchmarks.synthetic_vectors import GaussianMixture, exact_top_k
from mesh_rag_pipelines.contracts.model import IndexSpec
from mesh_rag_pipelines.store import binary_copy as enc
from mesh_rag_pipelines.store.database import engine_for
from mesh_rag_pipelines.store.schema import SCHEMA, hnsw_index, index_table

GROUPS = 10
QUERIES = 300
WARM_UP = 30
PASSES = 3
BUILD_TIMEOUT_MINUTES = 60


def run(argv: list[str]) -> dict:
    parser = argparse.ArgumentParser(prog="latency")
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    defaults = IndexSpec()
    parser.add_argument("--m", type=int, default=defaults.m)
    parser.add_argument("--ef-construction", type=int, default=defaults.ef_construction)
    parser.add_argument(
        "--ef-search",
        type=int,
        default=defaults.ef_search,
        help="the contract's default ef_search: the headline figures use it",
    )
    parser.add_argument("--also-ef-search", type=int, nargs="*", default=[])
    parser.add_argument(
        "--builds", type=int, default=1, help="HNSW builds per size (graphs differ by build)"
    )
    args = parser.parse_args(argv)
    spec = IndexSpec(m=args.m, ef_construction=args.ef_construction, ef_search=args.ef_search)
    efs = sorted({spec.ef_search, *args.also_ef_search})
    figures: dict = {}
    details: dict = {"index": spec.model_dump()}
    for rows in args.rows:
        with benchmark_database() as url:
            engine = engine_for(url)
            outcome = measure(engine, rows, spec, efs, args.builds, with_acl=rows <= 100_000)
            outcome["server"] = server_versions(engine)
            engine.dispose()
        details[str(rows)] = outcome
        print(f"{rows} rows: {outcome}", flush=True)
        figures.update(_headline(rows, outcome, spec.ef_search))
    # A run of one size keeps the other size's details: its own file.
    both = len(args.rows) > 1
    results.record_details("latency" if both else f"latency_{args.rows[0]}", details)
    return figures


def _headline(rows: int, outcome: dict, ef_search: int) -> dict:
    """Medians over builds at the contract's ef_search; null where the index was not built."""
    measured = outcome.get("summary", {}).get(str(ef_search), {})

    def median(kind: str, figure: str, digits: int) -> float | None:
        return round(measured[kind][figure]["median"], digits) if kind in measured else None

    if rows == 100_000:
        return {
            "p50_ms_100k": median("plain", "p50_ms", 2),
            "p99_ms_100k": median("plain", "p99_ms", 2),
            "recall10_100k": median("plain", "recall10", 4),
            "p99_ms_100k_acl": median("acl", "p99_ms", 2),
            "recall10_100k_acl": median("acl", "recall10", 4),
        }
    if rows == 1_000_000:
        return {
            "p50_ms_1m": median("plain", "p50_ms", 2),
            "p99_ms_1m": median("plain", "p99_ms", 2),
            "recall10_1m": median("plain", "recall10", 4),
        }
    return {}


def summarize(builds: list[dict]) -> dict:
    """Per ef_search and query kind: spread over builds of recall@10 and of each build's
    median-pass p50 and p99."""
    done = [b for b in builds if b.get("built")]
    summary: dict = {}
    for ef in done[0]["by_ef_search"] if done else []:
        for kind in done[0]["by_ef_search"][ef]:
            runs = [b["by_ef_search"][ef][kind] for b in done]
            summary.setdefault(ef, {})[kind] = {
                "recall10": results.spread([r["recall10"] for r in runs]),
                "p50_ms": results.spread([r["p50_ms"]["median"] for r in runs]),
                "p99_ms": results.spread([r["p99_ms"]["median"] for r in runs]),
            }
    return summary


def measure(
    engine: Engine, rows: int, spec: IndexSpec, efs: list[int], builds: int, with_acl: bool
) -> dict:
    """Load once, then build the indexes `builds` times and query each build."""
    mixture = GaussianMixture()
    table = index_table(f"synthetic_{rows}", 384, "cosine")
    with engine.begin() as conn:
        table.create(conn)
    indexes = [*table.indexes, hnsw_index(table.name, 384, "cosine", spec.m, spec.ef_construction)]
    _drop_indexes(engine, indexes)
    started = time.perf_counter()
    vectors = load(engine, table.name, mixture, rows)
    outcome: dict = {"rows": rows, "seconds_copy": time.perf_counter() - started, "builds": []}
    queries = mixture.sample(QUERIES + WARM_UP)
    groups = np.arange(rows) % GROUPS
    for number in range(builds):
        if number:
            _drop_indexes(engine, indexes)
        build = build_indexes(engine, table, indexes)
        outcome["builds"].append(build)
        if not build["built"]:
            break
        build["by_ef_search"] = {}
        for ef in efs:
            measured = {"plain": _query_set(engine, table, vectors, queries, ef, None, None)}
            if with_acl:
                measured["acl"] = _query_set(engine, table, vectors, queries, ef, groups, 3)
            build["by_ef_search"][str(ef)] = measured
    outcome["summary"] = summarize(outcome["builds"])
    return outcome


def _drop_indexes(engine: Engine, indexes: list[Index]) -> None:
    with engine.begin() as conn:
        for index in indexes:
            conn.execute(text(f"DROP INDEX IF EXISTS {SCHEMA}.{index.name}"))


def load(
    engine: Engine,
    table_name: str,
    mixture: GaussianMixture,
    rows: int,
    groups: int = GROUPS,
    product: str = "synthetic",
) -> np.ndarray:
    """Binary COPY in slices of 50k rows, the vectors kept for the exact ground truth; row i
    belongs to ACL group `group-{i % groups}`."""
    now = datetime.now(UTC)
    common = [enc.encode_text(product), enc.encode_int2(0), enc.encode_int8(1)]
    model = [enc.encode_text(""), enc.encode_text("paragraphs-v1"), enc.encode_text("synthetic")]
    kept = []
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        offset = 0
        for batch in mixture.batches(rows):
            payload = enc.copy_payload(
                (
                    enc.encode_text(f"doc-{(offset + i) // 3:07d}"),
                    enc.encode_int4((offset + i) % 3),
                    *common,
                    *model,
                    enc.encode_text(""),
                    enc.encode_text(f"Document {(offset + i) // 3}"),
                    enc.encode_text(f"Synthetic chunk {offset + i} of a structured corpus."),
                    enc.encode_text(f"{offset + i:032x}"),
                    enc.encode_jsonb({}),
                    enc.encode_text_array([group_name((offset + i) % groups)]),
                    enc.encode_text("chunk"),
                    enc.encode_timestamptz(now),
                    enc.encode_timestamptz(now),
                    enc.encode_vector(vector),
                )
                for i, vector in enumerate(batch)
            )
            columns = ", ".join(c.name for c in index_table(table_name, 384, "cosine").columns)
            cursor.copy_expert(
                f"COPY {SCHEMA}.{table_name} ({columns}) FROM STDIN (FORMAT binary)", payload
            )
            kept.append(batch)
            offset += len(batch)
        raw.commit()
    finally:
        raw.close()
    return np.concatenate(kept)


def build_indexes(engine, table, indexes: list[Index]) -> dict:  # type: ignore[no-untyped-def]
    """HNSW with a leader and one parallel worker (2 cores), all in memory; bounded in time."""
    outcome: dict = {"built": False}
    started = time.perf_counter()
    try:
        with engine.begin() as conn:
            conn.execute(text("SET LOCAL maintenance_work_mem = '6GB'"))
            conn.execute(text("SET LOCAL max_parallel_maintenance_workers = 1"))
            conn.execute(text(f"SET LOCAL statement_timeout = '{BUILD_TIMEOUT_MINUTES}min'"))
            for index in indexes:
                index.create(conn)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(f"VACUUM ANALYZE {SCHEMA}.{table.name}"))
        outcome["built"] = True
    except Exception as exc:  # a statement timeout: report what bounded the build
        outcome["build_error"] = str(exc).splitlines()[0]
    outcome["seconds_index_build"] = time.perf_counter() - started
    size = text("SELECT pg_relation_size(to_regclass(:name)) / 1e6")
    with engine.connect() as conn:
        for key, name in (("table_mb", table.name), ("hnsw_mb", f"{table.name}_hnsw")):
            outcome[key] = float(conn.execute(size, {"name": f"{SCHEMA}.{name}"}).scalar() or 0)
    return outcome


def _query_set(engine, table, vectors, queries, ef, groups, group) -> dict:  # type: ignore[no-untyped-def]
    """PASSES passes over the same queries after a warm-up; recall against exact top-10."""
    mask = None if groups is None else groups == group
    truth = exact_top_k(vectors, queries[WARM_UP:], 10, mask)
    distance = table.c.embedding.cosine_distance
    latencies: list[list[float]] = []
    recalls = []
    with engine.connect() as conn:
        conn.execute(text(f"SET hnsw.ef_search = {int(ef)}"))
        conn.execute(text("SET hnsw.iterative_scan = relaxed_order"))
        for number in range(PASSES):
            timings = []
            for position, vector in enumerate(queries):
                query = select(table, distance(vector).label("distance"))
                if mask is not None:
                    query = query.where(table.c.acl_groups.op("&&")(array([group_name(group)])))
                query = query.order_by(distance(vector)).limit(10)
                started = time.perf_counter()
                found = conn.execute(query).all()
                elapsed = (time.perf_counter() - started) * 1000
                if position < WARM_UP:
                    continue
                timings.append(elapsed)
                if number == 0:
                    expected = {row_key(r) for r in truth[position - WARM_UP]}
                    got = {(row.doc_id, row.chunk_no) for row in found}
                    recalls.append(len(expected & got) / 10)
            latencies.append(timings)
        conn.rollback()  # also ends the SETs
    return {
        "queries": QUERIES,
        "recall10": float(np.mean(recalls)),
        "p50_ms": results.spread([float(np.percentile(t, 50)) for t in latencies]),
        "p99_ms": results.spread([float(np.percentile(t, 99)) for t in latencies]),
        "plan": _plan(engine, table, queries[0], ef, mask is not None, group),
    }


def group_name(number: int) -> str:
    return f"group-{number:02d}"


def row_key(row_number: int) -> tuple[str, int]:
    return f"doc-{int(row_number) // 3:07d}", int(row_number) % 3


def _plan(engine, table, vector, ef: int, filtered: bool, group) -> str:  # type: ignore[no-untyped-def]
    literal = "[" + ",".join(repr(float(x)) for x in vector) + "]"
    where = f"WHERE acl_groups && ARRAY['{group_name(group)}'] " if filtered else ""
    with engine.begin() as conn:
        conn.execute(text(f"SET LOCAL hnsw.ef_search = {int(ef)}"))
        conn.execute(text("SET LOCAL hnsw.iterative_scan = relaxed_order"))
        lines = conn.execute(
            text(
                f"EXPLAIN SELECT doc_id FROM {SCHEMA}.{table.name} {where}"
                f"ORDER BY embedding <=> CAST(:q AS vector) LIMIT 10"
            ),
            {"q": literal},
        )
        plan = " / ".join(line[0].strip() for line in lines)
    return re.sub(r"'\[[^\]]*\]'::vector", "$q", plan)
