"""Access control in the database: index tables are readable only through row-level security.

Retrieval runs as the serving role, which has no BYPASSRLS and may read only the registry (to
find live versions) and the index tables, whose policy lets through the rows whose ACL groups
overlap the caller's groups, set per transaction. No groups set, no rows: raw SQL by that role
sees exactly what the API would. The store's owner (the pipelines) is not subject to the
policy; an unfiltered operator view is a separately configured connection
(MESH_RAG_OPERATOR_DATABASE_URL) whose role bypasses it.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, text

from mesh_rag_pipelines.store.schema import SCHEMA

SERVING_ROLE = "mesh_rag_serving"
GROUPS_SETTING = "mesh_rag.groups"
POLICY = "caller_groups"


def effective_groups(product_groups: Sequence[str], doc_groups: Sequence[str] | None) -> list[str]:
    """Who may read a document: the product's groups, narrowed to those the record names."""
    if doc_groups is None:
        return sorted(set(product_groups))
    return sorted(set(product_groups) & set(doc_groups))


def protect_index_table(conn: Connection, table_name: str) -> None:
    """Row-level security on one index-version table, readable by the serving role."""
    table = f"{SCHEMA}.{table_name}"  # registry value, not user input
    conn.execute(text(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY"))
    conn.execute(text(f"DROP POLICY IF EXISTS {POLICY} ON {table}"))
    conn.execute(
        text(
            f"CREATE POLICY {POLICY} ON {table} FOR SELECT TO {SERVING_ROLE} "
            f"USING (acl_groups && {SCHEMA}.caller_groups())"
        )
    )
    conn.execute(text(f"GRANT SELECT ON {table} TO {SERVING_ROLE}"))


def act_as_caller(conn: Connection, groups: Sequence[str]) -> None:
    """For the rest of the transaction: the serving role, reading as a caller with `groups`."""
    conn.execute(text(f"SET LOCAL ROLE {SERVING_ROLE}"))
    conn.execute(
        text("SELECT set_config(:setting, :groups, true)"),
        {"setting": GROUPS_SETTING, "groups": ",".join(sorted(set(groups)))},
    )
