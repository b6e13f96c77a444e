"""Access control in the database: index tables are readable only through row-level security.

Retrieval runs as the serving role, which has no BYPASSRLS and may read only the registry (to
find live versions) and the index tables, whose policy lets through the rows whose ACL groups
overlap the caller's groups. No groups, no rows: raw SQL by that role sees exactly what the API
would.

The caller's groups are set for one transaction, and only through `mesh_rag.set_caller_groups`
(text[]): it checks every group against the contracts' group pattern (so no group holds a comma
or any other separator) and stores them with a keyed digest of this transaction's identity,
made with a secret only the store's owner can read. `mesh_rag.caller_groups()`, which the
policy evaluates once per query, returns them only when the digest verifies for the current
transaction: a plain `SET mesh_rag.groups`, a `set_config`, a role default, or a value left on
a pooled connection by an earlier transaction yields no groups, hence no rows.

The store's owner (the pipelines) is not subject to the policy; an unfiltered operator view is
a separately configured connection (MESH_RAG_OPERATOR_DATABASE_URL) whose role bypasses it
(`connections.operator_engine` refuses any other).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from sqlalchemy import Connection, text

from mesh_rag_pipelines.contracts.fields import GROUP_PATTERN
from mesh_rag_pipelines.store.schema import SCHEMA, qualified

SERVING_ROLE = "mesh_rag_serving"
# The local operator role (BYPASSRLS, a member of the serving role for its grants), made by the
# embedded PostgreSQL of the local profile; elsewhere the platform team names its own.
OPERATOR_ROLE = "mesh_rag_operator"
GROUPS_SETTING = "mesh_rag.groups"
POLICY = "caller_groups"


class InvalidCallerGroup(ValueError):
    """A caller group that no contract could name (see contracts.model.GROUP_PATTERN)."""


def effective_groups(product_groups: Sequence[str], doc_groups: Sequence[str] | None) -> list[str]:
    """Who may read a document: the product's groups, narrowed to those the record names."""
    if doc_groups is None:
        return sorted(set(product_groups))
    return sorted(set(product_groups) & set(doc_groups))


def caller_groups(groups: Sequence[str]) -> list[str]:
    """The caller's groups, checked like a contract's (no separator can hide a second group
    inside one), sorted and without repeats."""
    if isinstance(groups, str):
        raise InvalidCallerGroup("caller groups are a list of names, not one string")
    for group in groups:
        if not isinstance(group, str) or not re.fullmatch(GROUP_PATTERN, group):
            raise InvalidCallerGroup(
                f"invalid caller group {group!r}: a group is 1 to 128 letters, digits or "
                "'_.:@-', starting with a letter or digit"
            )
    return sorted(set(groups))


def protect_index_table(conn: Connection, table_name: str) -> None:
    """Row-level security on one index-version table, readable by the serving role. The policy
    calls `caller_groups()` in a scalar subquery, so it runs once per query, not per row."""
    table = qualified(table_name)
    conn.execute(text(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY"))
    conn.execute(text(f"DROP POLICY IF EXISTS {POLICY} ON {table}"))
    conn.execute(
        text(
            f"CREATE POLICY {POLICY} ON {table} FOR SELECT TO {SERVING_ROLE} "
            f"USING (acl_groups && (SELECT {SCHEMA}.caller_groups()))"
        )
    )
    conn.execute(text(f"GRANT SELECT ON {table} TO {SERVING_ROLE}"))


def act_as_caller(conn: Connection, groups: Sequence[str]) -> None:
    """For the rest of the transaction: the serving role, reading as a caller with `groups`
    (an array, set through the store's own function, never a joined string)."""
    checked = caller_groups(groups)
    conn.execute(text(f"SET LOCAL ROLE {SERVING_ROLE}"))
    conn.execute(
        text(f"SELECT {SCHEMA}.set_caller_groups(CAST(:groups AS text[]))"), {"groups": checked}
    )
