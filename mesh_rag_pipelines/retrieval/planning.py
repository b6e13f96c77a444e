"""How a filtered vector query is executed: through the HNSW graph, or exactly over the rows the
caller may read.

Row-level security is a filter the graph walk must satisfy. For a caller who may read a large
share of a table, the HNSW index with iterative scans finds the nearest readable rows quickly
and with good recall. For a caller who may read few rows, the walk wanders far before it meets
enough of them, while computing the exact distance of each readable row (found through the
GIN index on `acl_groups`) is cheap and exact. PostgreSQL's planner picks between the two from
a selectivity estimate that a per-transaction caller setting makes blind, so the choice is made
here, from the table's own statistics: the share of rows in each of the caller's groups (ANALYZE's
most-common-elements) times the table's size. The serving role cannot read statistics of tables
under row-level security, so a function of the owner's (`mesh_rag.readable_rows`) gives it that
one estimate, for its own groups only.
"""

from __future__ import annotations

from sqlalchemy import Connection, text

from mesh_rag_pipelines.store.schema import SCHEMA

# Below this many readable rows, exact distances beat the graph walk (measured in
# benchmarks/rls.py: about 3.5 microseconds a row for 384 dimensions).
EXACT_MAX_ROWS = 4000


def readable_rows(conn: Connection, table_name: str) -> float | None:
    """An upper estimate of the rows the transaction's caller may read (their groups' shares
    of the table); None when the table has no statistics yet or the groups are none of its."""
    estimate = conn.execute(
        text(f"SELECT {SCHEMA}.readable_rows(:table)"), {"table": table_name}
    ).scalar()
    return None if estimate is None else float(estimate)


def choose_scan(conn: Connection, table_name: str) -> str:
    """Set the transaction (its caller already set) to walk the graph or to compute exact
    distances; returns which."""
    rows = readable_rows(conn, table_name)
    if rows is not None and rows <= EXACT_MAX_ROWS:
        conn.execute(text("SELECT set_config('enable_indexscan', 'off', true)"))
        return "exact"
    conn.execute(
        text(
            "SELECT set_config('enable_bitmapscan', 'off', true), "
            "set_config('enable_seqscan', 'off', true)"
        )
    )
    return "graph"
