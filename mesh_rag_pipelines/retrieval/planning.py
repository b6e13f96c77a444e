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
one estimate: for index-version tables only (those under its caller policy), for the caller's
verified groups only, so it tells nothing a count under the same groups would not. The table's
size (`pg_class.reltuples`) is in the catalog, which every role reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil

from sqlalchemy import Connection, text

from mesh_rag_pipelines.store.schema import SCHEMA, qualified

# Below this many readable rows, exact distances beat the graph walk (measured in
# benchmarks/rls.py: about 3.5 microseconds a row for 384 dimensions).
EXACT_MAX_ROWS = 4000
# A graph walk under a filter that passes a share s of the rows meets readable rows in about s
# of the candidates it keeps, so its breadth (ef_search) is widened by 1/s, at most this factor.
MAX_BREADTH_FACTOR = 4


@dataclass(frozen=True)
class Scan:
    kind: str  # "graph" or "exact"
    ef_search: int


def readable_share(conn: Connection, table_name: str) -> tuple[float | None, float]:
    """An upper estimate of the rows the transaction's caller may read (their groups' shares
    of the table; None when the table has no statistics yet or the groups are none of its),
    and the table's rows, in one round trip."""
    readable, total = conn.execute(
        text(
            f"SELECT {SCHEMA}.readable_rows(:table), "
            "(SELECT c.reltuples FROM pg_catalog.pg_class AS c "
            "WHERE c.oid = pg_catalog.to_regclass(:qualified))"
        ),
        {"table": table_name, "qualified": qualified(table_name)},
    ).one()
    return (None if readable is None else float(readable)), float(total or 0)


def plan_scan(conn: Connection, table_name: str, ef_search: int, filtered: bool = True) -> Scan:
    """Set the transaction (its caller already set) for one nearest-neighbour query: the graph
    with iterative scans and a breadth widened for the caller's share of the rows, or exact
    distances over few readable rows. Unfiltered (the operator's view): the graph as is."""
    scan = Scan("graph", ef_search)
    if filtered:
        rows, total = readable_share(conn, table_name)
        if rows is not None and rows <= EXACT_MAX_ROWS:
            scan = Scan("exact", ef_search)
        elif rows is not None:
            share = min(1.0, rows / total) if total > 0 else 1.0
            breadth = min(ceil(ef_search / share), ef_search * MAX_BREADTH_FACTOR)
            scan = Scan("graph", breadth)
        off = (
            ["enable_indexscan"]
            if scan.kind == "exact"
            else ["enable_bitmapscan", "enable_seqscan"]
        )
        for setting in off:
            conn.execute(text(f"SELECT set_config('{setting}', 'off', true)"))
    conn.execute(
        text(
            "SELECT set_config('hnsw.ef_search', :ef, true), "
            "set_config('hnsw.iterative_scan', 'relaxed_order', true)"
        ),
        {"ef": str(scan.ef_search)},
    )
    return scan
