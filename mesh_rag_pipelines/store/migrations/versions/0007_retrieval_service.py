"""What the retrieval service records, and who may write it.

- `api_key`: service identities. The token's secret is never stored, only its SHA-256; the
  serving role cannot read the table: it asks `mesh_rag.api_key_identity(id, secret_hash)`
  (SECURITY DEFINER, pinned search path, names qualified), which answers a valid, unrevoked,
  unexpired key's name and groups, or nothing.
- `query_log`: one row per request the service answered (the query masked), INSERT only for
  the serving role: it cannot read what other callers asked.
- `feedback`: judgments on responses, INSERT only for the serving role.
- `product_status`: each product's freshness as last judged (in sync, or what waits), written
  by the owner where freshness is judged; the serving role reads it for its catalog.
- `evaluation_candidate`: a negative judgment's query and the documents marked right, per
  product, waiting for review; accepted ones join the product's evaluation set. The owner's
  only (the curation commands and jobs run as the owner).
"""

from alembic import op

revision = "0007"
down_revision = "0006"

SCHEMA = "mesh_rag"
SERVING_ROLE = "mesh_rag_serving"
PINNED = "SET search_path = pg_catalog, pg_temp"


def upgrade() -> None:
    op.execute(
        f"""CREATE TABLE {SCHEMA}.api_key (
            id text PRIMARY KEY,
            name text NOT NULL,
            secret_hash text NOT NULL,
            groups text[] NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            expires_at timestamptz NOT NULL,
            revoked_at timestamptz,
            created_by text
        )"""
    )
    op.execute(f"REVOKE ALL ON {SCHEMA}.api_key FROM PUBLIC")
    op.execute(
        f"""CREATE FUNCTION {SCHEMA}.api_key_identity(key_id text, key_secret_hash text)
        RETURNS TABLE (name text, groups text[])
        LANGUAGE sql STABLE SECURITY DEFINER {PINNED} AS $$
        SELECT k.name, k.groups FROM {SCHEMA}.api_key AS k
        WHERE k.id = $1 AND k.secret_hash = $2
          AND k.revoked_at IS NULL AND k.expires_at > pg_catalog.now()
        $$"""
    )
    op.execute(f"REVOKE ALL ON FUNCTION {SCHEMA}.api_key_identity(text, text) FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION {SCHEMA}.api_key_identity(text, text) TO {SERVING_ROLE}")

    op.execute(
        f"""CREATE TABLE {SCHEMA}.query_log (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            response_id uuid NOT NULL UNIQUE,
            at timestamptz NOT NULL DEFAULT now(),
            subject text NOT NULL,
            identity_kind text NOT NULL,
            route text NOT NULL,
            query_masked text NOT NULL,
            products text[] NOT NULL,
            index_versions text[] NOT NULL,
            k integer NOT NULL,
            unit text NOT NULL,
            embed_ms real,
            search_ms real,
            total_ms real NOT NULL,
            result_ids text[] NOT NULL,
            abstention text,
            status integer NOT NULL
        )"""
    )
    op.execute(f"CREATE INDEX query_log_at ON {SCHEMA}.query_log (at)")
    op.execute(f"CREATE INDEX query_log_products ON {SCHEMA}.query_log USING gin (products)")
    op.execute(
        f"""CREATE TABLE {SCHEMA}.feedback (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            response_id uuid NOT NULL,
            at timestamptz NOT NULL DEFAULT now(),
            subject text NOT NULL,
            helpful boolean NOT NULL,
            right_results text[] NOT NULL DEFAULT '{{}}',
            comment text
        )"""
    )
    op.execute(f"CREATE INDEX feedback_response ON {SCHEMA}.feedback (response_id)")
    for table in ("query_log", "feedback"):
        op.execute(f"REVOKE ALL ON {SCHEMA}.{table} FROM PUBLIC")
        op.execute(f"GRANT INSERT ON {SCHEMA}.{table} TO {SERVING_ROLE}")

    op.execute(
        f"""CREATE TABLE {SCHEMA}.product_status (
            product text PRIMARY KEY,
            in_sync boolean NOT NULL,
            waiting_changes integer NOT NULL,
            unindexed_documents integer NOT NULL,
            oldest_change timestamptz,
            judged_at timestamptz NOT NULL DEFAULT now()
        )"""
    )
    op.execute(f"REVOKE ALL ON {SCHEMA}.product_status FROM PUBLIC")
    op.execute(f"GRANT SELECT ON {SCHEMA}.product_status TO {SERVING_ROLE}")

    op.execute(
        f"""CREATE TABLE {SCHEMA}.evaluation_candidate (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            feedback_id bigint NOT NULL REFERENCES {SCHEMA}.feedback (id) ON DELETE CASCADE,
            product text NOT NULL,
            query text NOT NULL,
            expected_doc_ids text[] NOT NULL,
            status text NOT NULL DEFAULT 'candidate'
                CHECK (status IN ('candidate', 'accepted', 'rejected')),
            created_at timestamptz NOT NULL DEFAULT now(),
            reviewed_by text,
            reviewed_at timestamptz,
            review_reason text,
            UNIQUE (feedback_id, product)
        )"""
    )
    op.execute(f"REVOKE ALL ON {SCHEMA}.evaluation_candidate FROM PUBLIC")


def downgrade() -> None:
    op.execute(f"DROP TABLE {SCHEMA}.evaluation_candidate")
    op.execute(f"DROP TABLE {SCHEMA}.product_status")
    op.execute(f"DROP TABLE {SCHEMA}.feedback")
    op.execute(f"DROP TABLE {SCHEMA}.query_log")
    op.execute(f"DROP FUNCTION {SCHEMA}.api_key_identity(text, text)")
    op.execute(f"DROP TABLE {SCHEMA}.api_key")
