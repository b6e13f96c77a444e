"""Governance: row-level security on every index table through a serving role; per-document
ACL groups named by records; erasure (forgotten documents, an audit table); quarantined records
linked to their document."""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY

revision = "0003"
down_revision = "0002"

SCHEMA = "mesh_rag"
SERVING_ROLE = "mesh_rag_serving"


def protect_index_table(conn: sa.Connection, table_name: str) -> None:
    """Row-level security on one index-version table, as this revision made it (a migration
    keeps its own SQL: the code's current version may differ)."""
    table = f'{SCHEMA}."{table_name}"'
    conn.execute(sa.text(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY"))
    conn.execute(sa.text(f"DROP POLICY IF EXISTS caller_groups ON {table}"))
    conn.execute(
        sa.text(
            f"CREATE POLICY caller_groups ON {table} FOR SELECT TO {SERVING_ROLE} "
            f"USING (acl_groups && {SCHEMA}.caller_groups())"
        )
    )
    conn.execute(sa.text(f"GRANT SELECT ON {table} TO {SERVING_ROLE}"))


def upgrade() -> None:
    op.add_column("document_state", sa.Column("doc_groups", ARRAY(sa.Text())), schema=SCHEMA)
    op.add_column(
        "document_state", sa.Column("forgotten_at", sa.DateTime(timezone=True)), schema=SCHEMA
    )
    op.add_column("quarantine", sa.Column("doc_id", sa.Text()), schema=SCHEMA)
    op.create_index("quarantine_doc", "quarantine", ["product", "doc_id"], schema=SCHEMA)
    op.create_table(
        "erasure_audit",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("product", sa.Text(), nullable=False),
        sa.Column("doc_id", sa.Text(), nullable=False),
        sa.Column("versions", ARRAY(sa.Text()), nullable=False),
        sa.Column("index_rows_removed", sa.Integer(), nullable=False),
        sa.Column("chunks_removed", sa.Integer(), nullable=False),
        sa.Column("cache_entries_removed", sa.Integer(), nullable=False),
        sa.Column("quarantined_removed", sa.Integer(), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text()),
        sa.Column(
            "at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        schema=SCHEMA,
    )
    # Roles belong to the server, not the database: create it once, grant per database.
    op.execute(
        f"""DO $$ BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{SERVING_ROLE}') THEN
                CREATE ROLE {SERVING_ROLE} LOGIN NOBYPASSRLS;
            END IF;
        END $$"""
    )
    op.execute(f"GRANT {SERVING_ROLE} TO CURRENT_USER")
    op.execute(f"GRANT USAGE ON SCHEMA {SCHEMA} TO {SERVING_ROLE}")
    op.execute(
        f"GRANT SELECT ON {SCHEMA}.index_version, {SCHEMA}.serving_pointer TO {SERVING_ROLE}"
    )
    op.execute(
        f"""CREATE FUNCTION {SCHEMA}.caller_groups() RETURNS text[] LANGUAGE sql STABLE AS
        $$ SELECT string_to_array(nullif(current_setting('mesh_rag.groups', true), ''), ',') $$"""
    )
    # Statistics of tables under row-level security are hidden from the serving role; retrieval
    # plans a filtered query from how many rows its caller may read, which this estimates
    # (for the caller's own groups only) from the owner's view of the statistics.
    op.execute(
        f"""CREATE FUNCTION {SCHEMA}.readable_rows(table_name text) RETURNS float8
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog AS $$
        SELECT least(1.0, coalesce((
                   SELECT sum(e.freq)
                   FROM unnest(s.most_common_elems::text::text[], s.most_common_elem_freqs)
                        AS e(elem, freq)
                   WHERE e.elem = ANY({SCHEMA}.caller_groups())), 0)) * c.reltuples
        FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_stats s ON s.schemaname = n.nspname AND s.tablename = c.relname
             AND s.attname = 'acl_groups'
        WHERE n.nspname = '{SCHEMA}' AND c.relname = table_name
        $$"""
    )
    op.execute(f"GRANT EXECUTE ON FUNCTION {SCHEMA}.readable_rows(text) TO {SERVING_ROLE}")
    conn = op.get_bind()
    tables = conn.execute(
        sa.text(f"SELECT table_name FROM {SCHEMA}.index_version WHERE dropped_at IS NULL")
    ).scalars()
    for table_name in list(tables):
        protect_index_table(conn, table_name)
