"""The serving role, hardened: it cannot become the owner, cannot choose its groups but through
the store's own function, and learns row estimates only of the tables it may read.

- No temporary objects but the owner's: TEMPORARY on the store's database is revoked from
  PUBLIC and from the serving role (the database's owner keeps it: the pipelines use temporary
  tables), so the serving role cannot shadow a catalog name in `pg_temp`; nor CREATE on schema
  `public` (granted to PUBLIC before PostgreSQL 15).
- Every function the serving role may execute that runs as the owner (SECURITY DEFINER) pins
  `search_path = pg_catalog, pg_temp` (the temporary schema searched last) and names every
  relation with its schema; EXECUTE is revoked from PUBLIC and granted to the serving role only.
- The caller's groups: `mesh_rag.set_caller_groups(text[])` checks each group against the
  contracts' pattern and sets, for the transaction only, the groups with a keyed digest
  (sha256 over a secret in `mesh_rag.caller_secret`, which only the owner reads, the backend
  and the transaction's start); `mesh_rag.caller_groups()` returns them only when the digest
  verifies for the current transaction. A `SET mesh_rag.groups` of any value, a role default,
  or a value left on a pooled connection yields no groups.
  (The backend and transaction start identify the transaction without assigning it an xid, which
  a read replica could not do and which every query would consume.)
- `mesh_rag.readable_rows(table)` answers only for tables under the serving role's caller
  policy (index-version tables), for the caller's verified groups only.
- Index tables are protected again: the policy evaluates `caller_groups()` once per query.
"""

import logging

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"

SCHEMA = "mesh_rag"
SERVING_ROLE = "mesh_rag_serving"
# contracts.model.GROUP_PATTERN as of this revision (a test keeps them equal).
GROUP_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$"
PINNED = "SET search_path = pg_catalog, pg_temp"
_log = logging.getLogger("alembic.runtime.migration")


def protect_index_table(conn: sa.Connection, table_name: str) -> None:
    """Row-level security on one index-version table, as this revision makes it: the policy
    evaluates caller_groups() once per query (a migration keeps its own SQL)."""
    table = f'{SCHEMA}."{table_name}"'
    conn.execute(sa.text(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY"))
    conn.execute(sa.text(f"DROP POLICY IF EXISTS caller_groups ON {table}"))
    conn.execute(
        sa.text(
            f"CREATE POLICY caller_groups ON {table} FOR SELECT TO {SERVING_ROLE} "
            f"USING (acl_groups && (SELECT {SCHEMA}.caller_groups()))"
        )
    )
    conn.execute(sa.text(f"GRANT SELECT ON {table} TO {SERVING_ROLE}"))


def upgrade() -> None:
    _no_temporary_objects_but_the_owners()
    op.execute(
        f"""CREATE TABLE {SCHEMA}.caller_secret (
            only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
            secret bytea NOT NULL
        )"""
    )
    op.execute(f"REVOKE ALL ON {SCHEMA}.caller_secret FROM PUBLIC")
    # 4 x 122 random bits (gen_random_uuid draws from the server's strong random source).
    op.execute(
        f"""INSERT INTO {SCHEMA}.caller_secret (secret)
        SELECT pg_catalog.sha256(pg_catalog.convert_to(
            gen_random_uuid()::text || gen_random_uuid()::text
            || gen_random_uuid()::text || gen_random_uuid()::text, 'UTF8'))"""
    )
    # The digest of a canonical groups literal for this transaction: the owner's only (called
    # from the two functions below, which run as the owner). sha256(secret || sha256(message))
    # hashes a fixed-length input, so no length extension applies.
    op.execute(
        f"""CREATE FUNCTION {SCHEMA}.caller_digest(groups text) RETURNS text
        LANGUAGE sql STABLE {PINNED} AS $$
        SELECT pg_catalog.encode(pg_catalog.sha256(s.secret || pg_catalog.sha256(
                   pg_catalog.convert_to(pg_catalog.concat_ws('/',
                       pg_catalog.pg_backend_pid(),
                       EXTRACT(epoch FROM pg_catalog.transaction_timestamp())::text,
                       groups), 'UTF8'))), 'hex')
        FROM {SCHEMA}.caller_secret AS s
        $$"""
    )
    op.execute(
        f"""CREATE FUNCTION {SCHEMA}.set_caller_groups(groups text[]) RETURNS void
        LANGUAGE plpgsql VOLATILE SECURITY DEFINER {PINNED} AS $$
        DECLARE
            canonical text;
        BEGIN
            IF groups IS NULL OR pg_catalog.array_ndims(groups) > 1 THEN
                RAISE EXCEPTION 'caller groups must be a one-dimensional array of names'
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            IF EXISTS (SELECT FROM pg_catalog.unnest(groups) AS g(name)
                       WHERE g.name IS NULL OR g.name !~ '{GROUP_PATTERN}') THEN
                RAISE EXCEPTION 'invalid caller group in %', groups
                    USING ERRCODE = 'invalid_parameter_value',
                          HINT = 'a group is 1 to 128 letters, digits or _.:@-, '
                                 'starting with a letter or digit';
            END IF;
            SELECT COALESCE(pg_catalog.array_agg(DISTINCT g.name ORDER BY g.name),
                            '{{}}'::text[])::text
              INTO canonical
              FROM pg_catalog.unnest(groups) AS g(name);
            PERFORM pg_catalog.set_config(
                'mesh_rag.groups', {SCHEMA}.caller_digest(canonical) || canonical, true);
        END
        $$"""
    )
    op.execute(
        f"""CREATE OR REPLACE FUNCTION {SCHEMA}.caller_groups() RETURNS text[]
        LANGUAGE plpgsql STABLE SECURITY DEFINER {PINNED} AS $$
        DECLARE
            token text := pg_catalog.current_setting('mesh_rag.groups', true);
            canonical text;
        BEGIN
            IF token IS NULL OR pg_catalog.length(token) < 66 THEN
                RETURN '{{}}'::text[];
            END IF;
            canonical := pg_catalog.substr(token, 65);
            IF pg_catalog.substr(token, 1, 64)
                   IS DISTINCT FROM {SCHEMA}.caller_digest(canonical) THEN
                RETURN '{{}}'::text[];
            END IF;
            RETURN canonical::text[];
        END
        $$"""
    )
    op.execute(
        f"""CREATE OR REPLACE FUNCTION {SCHEMA}.readable_rows(table_name text) RETURNS float8
        LANGUAGE sql STABLE SECURITY DEFINER {PINNED} AS $$
        SELECT LEAST(1.0, COALESCE((
                   SELECT pg_catalog.sum(e.freq)
                   FROM ROWS FROM (pg_catalog.unnest(s.most_common_elems::text::text[]),
                                   pg_catalog.unnest(s.most_common_elem_freqs)) AS e(elem, freq)
                   WHERE e.elem = ANY (caller.groups)), 0)) * c.reltuples
        FROM pg_catalog.pg_class AS c
        JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
        JOIN pg_catalog.pg_stats AS s ON s.schemaname = n.nspname AND s.tablename = c.relname
             AND s.attname = 'acl_groups'
        CROSS JOIN (SELECT {SCHEMA}.caller_groups() AS groups) AS caller
        WHERE n.nspname = '{SCHEMA}' AND c.relname = $1 AND c.relkind = 'r'
          AND EXISTS (SELECT FROM pg_catalog.pg_policy AS p
                      WHERE p.polrelid = c.oid AND p.polname = 'caller_groups')
        $$"""
    )
    functions = (
        f"{SCHEMA}.caller_digest(text)",
        f"{SCHEMA}.set_caller_groups(text[])",
        f"{SCHEMA}.caller_groups()",
        f"{SCHEMA}.readable_rows(text)",
    )
    for function in functions:
        op.execute(f"REVOKE ALL ON FUNCTION {function} FROM PUBLIC")
    for function in functions[1:]:
        op.execute(f"GRANT EXECUTE ON FUNCTION {function} TO {SERVING_ROLE}")
    conn = op.get_bind()
    tables = conn.execute(
        sa.text(f"SELECT table_name FROM {SCHEMA}.index_version WHERE dropped_at IS NULL")
    ).scalars()
    for table_name in list(tables):
        exists = conn.execute(sa.text("SELECT to_regclass(:t)"), {"t": f"{SCHEMA}.{table_name}"})
        if exists.scalar() is not None:
            protect_index_table(conn, table_name)


def _no_temporary_objects_but_the_owners() -> None:
    """Only the database's owner (or a superuser) can revoke what PUBLIC holds on it; a
    migrating role that is neither leaves it as it was, with a warning naming what to run.
    The owner keeps TEMPORARY (by ownership): the pipelines use temporary tables."""
    op.execute(
        f"""DO $$
        DECLARE
            db text := pg_catalog.current_database();
        BEGIN
            EXECUTE pg_catalog.format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC', db);
            EXECUTE pg_catalog.format('REVOKE TEMPORARY ON DATABASE %I FROM {SERVING_ROLE}', db);
            IF EXISTS (SELECT FROM pg_catalog.pg_namespace WHERE nspname = 'public') THEN
                REVOKE CREATE ON SCHEMA public FROM PUBLIC;
            END IF;
        END
        $$"""
    )
    conn = op.get_bind()
    allowed = conn.execute(
        sa.text(
            "SELECT has_database_privilege(current_user, current_database(), 'TEMPORARY'), "
            "has_database_privilege(:role, current_database(), 'TEMPORARY'), "
            "coalesce(has_schema_privilege(:role, to_regnamespace('public'), 'CREATE'), false), "
            "current_database()"
        ),
        {"role": SERVING_ROLE},
    ).one()
    owner_temporary, serving_temporary, serving_public, database = allowed
    if not owner_temporary:
        raise RuntimeError(
            f"the store's role lost TEMPORARY on database {database}: as the database's owner "
            f"run GRANT TEMPORARY ON DATABASE {database} TO <the store's role>"
        )
    if serving_temporary:
        _log.warning(
            "role %s may create temporary objects in database %s: as the database's owner run "
            "REVOKE TEMPORARY ON DATABASE %s FROM PUBLIC",
            SERVING_ROLE,
            database,
            database,
        )
    if serving_public:
        _log.warning(
            "role %s may create objects in schema public: as its owner run "
            "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
            SERVING_ROLE,
        )
