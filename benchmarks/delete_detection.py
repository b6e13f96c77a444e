"""What hard-delete detection costs a `postgres_table` source: each run reads the whole id
column (the key-set scan) besides the watermark query for upserts. Measured on a 100k-row
table shaped like the catalog sample (id, revision, updated_at, name, ~120-word description),
median of several runs, in SQL alone (EXPLAIN ANALYZE) and at the client as the source's `read` does
it; plus a whole no-change read of one shard (the source kind's `read`).
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, text

from benchmarks import results
from benchmarks.database import benchmark_database
from benchmarks.scifact import server_versions
from mesh_rag_pipelines.contracts import load_contract
from mesh_rag_pipelines.settings import DEFAULT_SHARDS, Settings
from mesh_rag_pipelines.sources.base import ShardState, SourceContext
from mesh_rag_pipelines.sources.documents import KnownDocument
from mesh_rag_pipelines.sources.postgres_table import WATERMARK
from mesh_rag_pipelines.store.database import engine_for
from mesh_rag_pipelines_tests.helpers import shard_of

ROWS = 100_000
REPEATS = 7
RECENT = 100  # rows changed since the watermark, as in a routine poll
_WORDS = ("trail", "jacket", "waterproof", "seam", "taped", "hood", "pocket", "zip", "fleece")
_CONTRACT = """\
name: bench_catalog
domain: commerce
owner: team:catalog
description: A 100k-row product table for measuring change detection.
document_type: product
source:
  kind: postgres_table
  table: bench_source.products
schema:
  id_field: sku
  version_field: revision
  updated_at_field: updated_at
  title_field: name
  text_fields: [description]
acl_groups: [employees]
freshness:
  sla: 30m
chunking:
  name: paragraphs
  version: 1
embedding:
  provider: local
  model: all-MiniLM-L6-v2
  dimensions: 384
"""


def run(argv: list[str]) -> dict:
    parser = argparse.ArgumentParser(prog="delete_detection")
    parser.add_argument("--rows", type=int, default=ROWS)
    args = parser.parse_args(argv)
    with benchmark_database() as url, tempfile.TemporaryDirectory() as folder:
        engine = engine_for(url)
        watermark = _create_table(engine, args.rows)
        path = Path(folder) / "bench_catalog.yaml"
        path.write_text(_CONTRACT)
        contract = load_contract(path)
        details = {
            "rows": args.rows,
            "key_set_scan": _measure(engine, "SELECT sku FROM bench_source.products", {}),
            "watermark_query": _measure(
                engine,
                "SELECT sku, revision, updated_at, name, description FROM bench_source.products "
                "WHERE updated_at >= :w ORDER BY updated_at",
                {"w": watermark},
            ),
            "read_table_one_shard_no_changes": _read_table(engine, contract, watermark),
            "server": server_versions(engine),
        }
        engine.dispose()
    results.record_details("delete_detection", details)
    print(details, flush=True)
    return {}


def _create_table(engine: Engine, rows: int) -> datetime:
    """The table, VACUUMed and ANALYZEd; returns a watermark RECENT rows from the end."""
    rng = random.Random(5)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    with engine.begin() as conn:
        conn.execute(text("CREATE SCHEMA bench_source"))
        conn.execute(
            text(
                "CREATE TABLE bench_source.products (sku text PRIMARY KEY, revision bigint, "
                "updated_at timestamptz NOT NULL, name text, description text)"
            )
        )
        conn.execute(text("CREATE INDEX ON bench_source.products (updated_at)"))
        conn.execute(
            text("INSERT INTO bench_source.products VALUES (:sku, 1, :at, :name, :description)"),
            [
                {
                    "sku": f"SKU-{i:07d}",
                    "at": start + timedelta(seconds=i),
                    "name": f"Product {i}",
                    "description": " ".join(rng.choices(_WORDS, k=120)),
                }
                for i in range(rows)
            ],
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE bench_source.products"))
    return start + timedelta(seconds=rows - RECENT)


def _measure(engine: Engine, sql: str, params: dict) -> dict:
    """Server time (EXPLAIN ANALYZE) and client time fetching every row, REPEATS times."""
    server, client, plan = [], [], ""
    with engine.connect() as conn:
        conn.execute(text(sql), params).all()  # warm the cache
        for _ in range(REPEATS):
            lines = [
                row[0] for row in conn.execute(text(f"EXPLAIN (ANALYZE, BUFFERS) {sql}"), params)
            ]
            server.append(float(lines[-1].split(":")[1].split()[0]))
            plan = lines[0]
            started = time.perf_counter()
            fetched = conn.execute(text(sql), params).all()
            client.append((time.perf_counter() - started) * 1000)
    return {
        "rows_returned": len(fetched),
        "plan": plan,
        "server_ms": results.spread(server),
        "client_ms": results.spread(client),
    }


def _read_table(engine: Engine, contract, watermark: datetime) -> dict:  # type: ignore[no-untyped-def]
    """A routine poll of shard 0 when nothing changed since the watermark: every known id is
    up to date, so all the work is the watermark read and the key-set scan."""
    with engine.connect() as conn:
        ids = list(conn.execute(text("SELECT sku FROM bench_source.products")).scalars())
    known = {i: KnownDocument(1, None, False) for i in ids if shard_of(i) == 0}
    state = ShardState(known=known, cursors={WATERMARK: watermark.isoformat()})
    context = SourceContext(engine, Settings.from_env())
    timings = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        read = contract.source.read(contract, 0, state, context)
        timings.append((time.perf_counter() - started) * 1000)
    assert not read.changes, "nothing changed, so nothing may be read as a change"
    return {"ms": results.spread(timings), "shards_per_product_poll": DEFAULT_SHARDS}
