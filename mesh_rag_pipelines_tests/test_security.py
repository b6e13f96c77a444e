"""The serving role attacks the store, with its own credentials, at every release of the schema.

A fresh store is created at the baseline revision with one index-version table (memos readable
by `execs` only, by `employees`, by `employees` and `hr`) and upgraded migration by migration
(Alembic, as an installed store is). At every revision that has the serving role the whole
attack list runs as `mesh_rag_serving`, logged in with its own password:

- hijack every SECURITY DEFINER function it may execute (found in pg_proc) through temporary
  objects that shadow the relations the function names (`pg_temp` is searched first unless a
  function pins it last), with a payload that makes the serving role BYPASSRLS and runs
  `COPY ... TO PROGRAM` as the server's OS user; once as is, once with TEMPORARY granted back
  to it (the pinned search path alone must hold);
- set the groups itself: `SET mesh_rag.groups`, `set_config`, a token replayed from an earlier
  transaction, a role default; a group holding a comma; a session-level setting left on a
  pooled connection for the next transaction;
- temporary tables, objects in any schema, `COPY TO PROGRAM`, server files, the digest's secret,
  another role; row estimates of tables it may not read;
- log in without a password, and pass its own URL off as the operator's.

From the revision that closed these holes on, every attack fails (no rows, or refused). Before
it, the suite must see the holes it was written for: proof that it detects them.
"""

from __future__ import annotations

import importlib.util
import re
import tempfile
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from mesh_rag_pipelines import connections, settings
from mesh_rag_pipelines.contracts.model import GROUP_PATTERN
from mesh_rag_pipelines.governance.access import (
    OPERATOR_ROLE,
    SERVING_ROLE,
    InvalidCallerGroup,
    act_as_caller,
    caller_groups,
)
from mesh_rag_pipelines.services.embedded_postgres import HBA, credentials_path, local_login
from mesh_rag_pipelines.store.database import BASELINE, MIGRATIONS, _alembic, head_revision
from mesh_rag_pipelines.store.schema import SCHEMA, index_table

# The first revision at which every attack must fail.
SECURED_SINCE = "0005"
# What the suite must find open before it (proof that it detects each hole).
HOLES_BEFORE = {
    "temp_hijack",
    "set_groups",
    "comma_group",
    "session_leak",
    "create_temp_table",
    "readable_rows_other_tables",
}
TABLE = "idx_memos__security"
MEMOS = {("execs",): 10, ("employees",): 30, ("employees", "hr"): 20}
EXEC_ONLY = 10


def _revisions() -> list[str]:
    scripts = ScriptDirectory(str(MIGRATIONS)).walk_revisions()
    return [script.revision for script in reversed(list(scripts))]


def _secured(revision: str) -> bool:
    order = _revisions()
    return order.index(revision) >= order.index(SECURED_SINCE)


def _login(url: str, role: str) -> str:
    try:
        return local_login(url, role)
    except (OSError, KeyError) as exc:  # pragma: no cover - an external test server
        pytest.skip(f"needs the embedded PostgreSQL's generated passwords: {exc}")


def _baseline_store(url: str) -> Engine:
    """A store as the first release left it, with one registered index version and its rows,
    and a few document states: the later migrations protect and harden what is there."""
    owner = create_engine(url, poolclass=NullPool)
    now = datetime.now(UTC)
    with owner.begin() as conn:
        conn.execute(text("CREATE EXTENSION IF NOT EXISTS vector"))
        conn.execute(text(f"CREATE SCHEMA {SCHEMA}"))
        command.upgrade(_alembic(conn), BASELINE)
        conn.execute(
            text(
                f"INSERT INTO {SCHEMA}.index_version (id, product, chunker, model_id, dimensions,"
                " distance, table_name, status, metrics) VALUES ('memos-v1', 'memos',"
                " 'markdown_sections-v1-w180-o20', 'local:all-MiniLM-L6-v2:main:3', 3, 'cosine',"
                " :table, 'live', '{}')"
            ),
            {"table": TABLE},
        )
        conn.execute(
            text(
                f"INSERT INTO {SCHEMA}.serving_pointer (product, index_version) "
                "VALUES ('memos', 'memos-v1')"
            )
        )
        table = index_table(TABLE, 3, "cosine")
        table.create(conn)
        rows: list[dict[str, object]] = []
        for groups, count in MEMOS.items():
            for _ in range(count):
                number = len(rows)
                rows.append(
                    {
                        "doc_id": f"memo-{number}", "chunk_no": 0, "product": "memos",
                        "shard": 0, "doc_version": 1, "source_checksum": "c",
                        "chunker_version": "markdown_sections-v1-w180-o20",
                        "embedding_model": "local:all-MiniLM-L6-v2:main:3", "section": "",
                        "title": f"memo {number}", "text": "memo", "text_hash": f"h{number}",
                        "metadata": {}, "acl_groups": list(groups), "document_type": "memo",
                        "source_updated_at": now, "created_at": now,
                        "embedding": [1.0, float(number), 0.5],
                    }
                )  # fmt: skip
        conn.execute(table.insert(), rows)
        conn.execute(
            text(
                f"INSERT INTO {SCHEMA}.document_state (product, doc_id, shard, version, metadata,"
                " acl_groups, document_type, deleted) SELECT 'memos', 'memo-' || n, 0, 1, '{}',"
                " ARRAY['execs'], 'memo', false FROM generate_series(1, 5) AS n"
            )
        )
        conn.execute(text(f"ANALYZE {SCHEMA}.{TABLE}"))
        conn.execute(text(f"ANALYZE {SCHEMA}.document_state"))
    return owner


def _upgrade(owner: Engine, revision: str) -> None:
    with owner.begin() as conn:
        command.upgrade(_alembic(conn), revision)


def _has_serving_role(owner: Engine) -> bool:
    with owner.connect() as conn:
        return bool(
            conn.execute(
                text("SELECT has_schema_privilege(:role, :schema, 'USAGE')"),
                {"role": SERVING_ROLE, "schema": SCHEMA},
            ).scalar()
        )


def _count(conn: Connection) -> int:
    return int(conn.execute(text(f"SELECT count(*) FROM {SCHEMA}.{TABLE}")).scalar_one())


def _refused(exc: DBAPIError) -> bool:
    """A refusal: a permission error, an authentication failure or an invalid value."""
    code = getattr(exc.orig, "pgcode", None)
    return code in ("42501", "22023", "28P01", "28000") or "permission denied" in str(exc)


def _serving_bypasses(owner: Engine) -> bool:
    with owner.connect() as conn:
        return bool(
            conn.execute(
                text("SELECT rolbypassrls OR rolsuper FROM pg_catalog.pg_roles WHERE rolname = :r"),
                {"r": SERVING_ROLE},
            ).scalar()
        )


def _executable_definers(conn: Connection) -> list[tuple[str, str, str, list[str], list[str]]]:
    """Every SECURITY DEFINER function the serving role may execute, in any schema: schema,
    name, body, argument types, settings (proconfig)."""
    rows = conn.execute(
        text(
            "SELECT n.nspname, p.proname, p.prosrc, "
            "coalesce((SELECT array_agg(format_type(t, NULL) ORDER BY o) "
            "          FROM unnest(p.proargtypes) WITH ORDINALITY AS a(t, o)), '{}'), "
            "coalesce(p.proconfig, '{}') "
            "FROM pg_catalog.pg_proc AS p JOIN pg_catalog.pg_namespace AS n "
            "ON n.oid = p.pronamespace "
            "WHERE p.prosecdef AND has_function_privilege(:role, p.oid, 'EXECUTE') "
            "ORDER BY 1, 2"
        ),
        {"role": SERVING_ROLE},
    ).all()
    return [(r[0], r[1], r[2], list(r[3]), list(r[4])) for r in rows]


_SAMPLE_ARGUMENTS = {"text": f"'{TABLE}'", "text[]": "ARRAY['employees']"}


def _call(schema: str, name: str, argument_types: list[str]) -> str:
    arguments = [_SAMPLE_ARGUMENTS.get(t, f"NULL::{t}") for t in argument_types]
    return f"SELECT {schema}.{name}({', '.join(arguments)})"


class Attacks:
    """The attack list, run as the serving role on one store; each returns True when the
    attacker gained something (a row, a privilege, a side effect)."""

    def __init__(self, owner: Engine, serving_url: str, database: str, secured: bool):
        self.owner, self.serving_url = owner, serving_url
        self.database, self.secured = database, secured
        self.marker = Path(tempfile.gettempdir()) / f"mesh_rag_attack_{uuid.uuid4().hex}"

    def serving(self, **pool: int) -> Engine:
        if pool:
            return create_engine(self.serving_url, **pool)  # type: ignore[arg-type]
        return create_engine(self.serving_url, poolclass=NullPool)

    def run(self, operator_check: Callable[[str], bool]) -> dict[str, bool]:
        attacks: dict[str, Callable[[], bool]] = {
            "temp_hijack": self.temp_hijack,
            "temp_hijack_with_temp_granted": self.temp_hijack_with_temp_granted,
            "set_groups": self.set_groups,
            "comma_group": self.comma_group,
            "session_leak": self.session_leak,
            "role_default": self.role_default,
            "copy_to_program": self.copy_to_program,
            "create_temp_table": self.create_temp_table,
            "create_objects": self.create_objects,
            "read_secret": self.read_secret,
            "readable_rows_other_tables": self.readable_rows_other_tables,
            "escalate_directly": self.escalate_directly,
            "no_password": self.no_password,
            "operator_url_is_serving": lambda: operator_check(self.serving_url),
        }
        try:
            return {name: attack() for name, attack in attacks.items()}
        finally:
            self.restore()

    def restore(self) -> None:
        with self.owner.begin() as conn:
            conn.execute(text(f"ALTER ROLE {SERVING_ROLE} NOBYPASSRLS"))
            conn.execute(
                text(f'REVOKE TEMPORARY ON DATABASE "{self.database}" FROM {SERVING_ROLE}')
            )
        if self.marker.exists():
            self.marker.unlink()

    # -- the serving role becomes the owner ------------------------------------------------------

    def _payload(self) -> str:
        escalate = (
            f"BEGIN EXECUTE 'ALTER ROLE {SERVING_ROLE} BYPASSRLS'; "
            "EXCEPTION WHEN OTHERS THEN NULL; END;"
            if self.secured  # before, the hole is open: record it without changing the role
            else ""
        )
        return f"""
            IF coalesce(pg_catalog.current_setting('attack.ran_as', true), '') = '' THEN
                PERFORM pg_catalog.set_config('attack.ran_as', current_user::text, false);
                {escalate}
                BEGIN
                    EXECUTE pg_catalog.format('COPY (SELECT 1) TO PROGRAM %L',
                                              'touch {self.marker}');
                EXCEPTION WHEN OTHERS THEN NULL;
                END;
            END IF;"""

    def _shadows(self, conn: Connection, bodies: list[str]) -> list[str]:
        """A temporary view for every relation of pg_catalog or the store that a function body
        names: same columns (a pseudo-typed one as text), rows only through pg_temp.evil()."""
        words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", " ".join(bodies)))
        relations = conn.execute(
            text(
                "SELECT n.nspname, c.relname, has_table_privilege(c.oid, 'SELECT'), "
                "(SELECT string_agg(CASE WHEN t.typtype = 'p' "
                "                        THEN format('%1$I::text AS %1$I', a.attname) "
                "                        ELSE format('%I', a.attname) END, ', ' "
                "                   ORDER BY a.attnum) "
                " FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid"
                " WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), "
                "(SELECT string_agg(format('NULL::%s AS %I', format_type(a.atttypid, "
                "a.atttypmod), a.attname), ', ' ORDER BY a.attnum) FROM pg_catalog.pg_attribute a "
                "WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) "
                "FROM pg_catalog.pg_class AS c JOIN pg_catalog.pg_namespace AS n "
                "ON n.oid = c.relnamespace WHERE n.nspname IN ('pg_catalog', :schema) "
                "AND c.relkind IN ('r', 'v', 'm', 'p', 'f') AND c.relname = ANY(:words)"
            ),
            {"schema": SCHEMA, "words": sorted(words)},
        ).all()
        statements = []
        for schema, name, readable, columns, nulls in relations:
            source = (
                f"SELECT {columns} FROM {schema}.{name} WHERE pg_temp.evil()"
                if readable
                else f"SELECT {nulls} WHERE pg_temp.evil()"
            )
            statements.append(f'CREATE TEMP VIEW "{name}" AS {source}')
        return statements

    def temp_hijack(self) -> bool:
        """Shadow what each SECURITY DEFINER function names, then call each function."""
        engine = self.serving()
        try:
            with engine.connect() as conn:
                definers = _executable_definers(conn)
                conn.commit()
                assert definers, "the serving role executes no SECURITY DEFINER function"
                try:
                    with conn.begin():
                        conn.execute(
                            text(
                                "CREATE FUNCTION pg_temp.evil() RETURNS boolean LANGUAGE plpgsql"
                                f" AS $evil$ BEGIN {self._payload()} RETURN true; END $evil$"
                            )
                        )
                        for statement in self._shadows(conn, [d[2] for d in definers]):
                            conn.execute(text(statement))
                except DBAPIError as exc:
                    assert _refused(exc), exc
                    return False
                for schema, name, _, argument_types, _ in definers:
                    try:
                        with conn.begin():
                            if self.secured:
                                conn.execute(
                                    text(f"SELECT {SCHEMA}.set_caller_groups(ARRAY['employees'])")
                                )
                            else:
                                conn.execute(text("SET LOCAL mesh_rag.groups = 'employees'"))
                            conn.execute(text(_call(schema, name, argument_types)))
                    except DBAPIError:
                        pass  # an error rolls the payload's own changes back, not its program
                ran_as = conn.execute(
                    text("SELECT pg_catalog.current_setting('attack.ran_as', true)")
                ).scalar()
                conn.execute(text("DISCARD TEMP"))
                conn.commit()
        finally:
            engine.dispose()
        return (
            ran_as not in (None, "", SERVING_ROLE)
            or self.marker.exists()
            or (_serving_bypasses(self.owner))
        )

    def temp_hijack_with_temp_granted(self) -> bool:
        """The pinned search path alone must hold: TEMPORARY granted back for this attack."""
        if not self.secured:
            return False  # the same hole as temp_hijack
        with self.owner.begin() as conn:
            conn.execute(text(f'GRANT TEMPORARY ON DATABASE "{self.database}" TO {SERVING_ROLE}'))
        try:
            return self.temp_hijack()
        finally:
            with self.owner.begin() as conn:
                conn.execute(
                    text(f'REVOKE TEMPORARY ON DATABASE "{self.database}" FROM {SERVING_ROLE}')
                )

    # -- the serving role chooses its groups -----------------------------------------------------

    def _token(self, conn: Connection, groups: str) -> str:
        """A value of the groups setting the store's own function made (in an earlier
        transaction), or before it existed, the plain list."""
        if not self.secured:
            return groups
        with conn.begin():
            conn.execute(
                text(f"SELECT {SCHEMA}.set_caller_groups(CAST(:g AS text[]))"),
                {"g": groups.split(",")},
            )
            return str(conn.execute(text("SELECT current_setting('mesh_rag.groups')")).scalar())

    def set_groups(self) -> bool:
        engine = self.serving()
        try:
            with engine.connect() as conn:
                replayed = self._token(conn, "execs")
                seen = 0
                for value in ("execs", "employees,execs", "{execs}", replayed):
                    with conn.begin():
                        conn.execute(
                            text("SELECT set_config('mesh_rag.groups', :v, true)"), {"v": value}
                        )
                        seen += _count(conn)
                    conn.execute(text(f"SET mesh_rag.groups = '{value}'"))
                    conn.commit()
                    with conn.begin():
                        seen += _count(conn)
                    conn.execute(text("RESET mesh_rag.groups"))
                    conn.commit()
        finally:
            engine.dispose()
        return seen > 0

    def comma_group(self) -> bool:
        """A group holding a comma is refused whole, never split into two."""
        engine = self.serving()
        seen = 0
        try:
            with engine.connect() as conn:
                for groups in (["x,execs"], ["employees", "x,execs"], ["execs\n"], [" execs"]):
                    try:
                        with conn.begin():
                            if self.secured:
                                conn.execute(
                                    text(f"SELECT {SCHEMA}.set_caller_groups(CAST(:g AS text[]))"),
                                    {"g": groups},
                                )
                            else:  # how the caller was set before: one joined string
                                conn.execute(
                                    text("SELECT set_config('mesh_rag.groups', :g, true)"),
                                    {"g": ",".join(groups)},
                                )
                            seen += int(
                                conn.execute(
                                    text(
                                        f"SELECT count(*) FROM {SCHEMA}.{TABLE} "
                                        "WHERE acl_groups = ARRAY['execs']"
                                    )
                                ).scalar_one()
                            )
                    except DBAPIError as exc:
                        assert _refused(exc), exc
        finally:
            engine.dispose()
        return seen > 0

    def session_leak(self) -> bool:
        """A setting made at session level, left on a pooled connection, does not reach the
        next transaction of the same connection (whoever uses it next)."""
        pooled = self.serving(pool_size=1, max_overflow=0)
        try:
            with pooled.connect() as conn:
                first = conn.execute(text("SELECT pg_backend_pid()")).scalar()
                conn.commit()
                token = self._token(conn, "execs")
                with conn.begin():
                    if self.secured:
                        conn.execute(text(f"SELECT {SCHEMA}.set_caller_groups(ARRAY['execs'])"))
                        conn.execute(
                            text(
                                "SELECT set_config('mesh_rag.groups', "
                                "current_setting('mesh_rag.groups'), false)"
                            )
                        )
                    else:
                        conn.execute(text("SELECT set_config('mesh_rag.groups', 'execs', false)"))
                conn.execute(text(f"SET mesh_rag.groups = '{token}'"))
                conn.commit()
            with pooled.connect() as conn:
                assert conn.execute(text("SELECT pg_backend_pid()")).scalar() == first
                seen = _count(conn)
                conn.commit()
        finally:
            pooled.dispose()
        return seen > 0

    def role_default(self) -> bool:
        """A default of its own role, in this database, for the groups setting."""
        engine = self.serving()
        try:
            with engine.connect() as conn:
                token = self._token(conn, "execs")
                try:
                    conn.execute(
                        text(
                            f'ALTER ROLE {SERVING_ROLE} IN DATABASE "{self.database}" '
                            f"SET mesh_rag.groups = '{token}'"
                        )
                    )
                    conn.commit()
                except DBAPIError as exc:
                    assert _refused(exc), exc
                    return False
            with engine.connect() as conn:
                seen = _count(conn)
        finally:
            engine.dispose()
            with self.owner.begin() as conn:
                conn.execute(
                    text(
                        f'ALTER ROLE {SERVING_ROLE} IN DATABASE "{self.database}" '
                        "RESET mesh_rag.groups"
                    )
                )
        return seen > 0

    # -- what the serving role may do beyond reading -------------------------------------------

    def _allowed(self, statements: list[str]) -> bool:
        """Whether any statement runs; each must otherwise be refused for lack of privilege."""
        engine = self.serving()
        allowed = False
        try:
            with engine.connect() as conn:
                for statement in statements:
                    try:
                        with conn.begin():
                            conn.execute(text(statement))
                            allowed = True
                    except DBAPIError as exc:
                        assert _refused(exc), exc
        finally:
            engine.dispose()
        return allowed

    def copy_to_program(self) -> bool:
        ran = self._allowed([f"COPY (SELECT 1) TO PROGRAM 'touch {self.marker}'"])
        return ran or self.marker.exists()

    def create_temp_table(self) -> bool:
        return self._allowed(
            ["CREATE TEMP TABLE stash (x int)", "CREATE TEMP VIEW pg_class AS SELECT 1 AS oid"]
        )

    def create_objects(self) -> bool:
        return self._allowed(
            [
                f"CREATE TABLE {SCHEMA}.stash (x int)",
                "CREATE TABLE public.stash (x int)",
                "CREATE FUNCTION public.lower(varchar) RETURNS text LANGUAGE sql AS 'SELECT 1'",
                f"CREATE SCHEMA stash_{uuid.uuid4().hex[:8]}",
            ]
        )

    def read_secret(self) -> bool:
        if not self.secured:
            return False  # no secret before
        return self._allowed(
            [
                f"SELECT secret FROM {SCHEMA}.caller_secret",
                f"SELECT {SCHEMA}.caller_digest('{{execs}}')",
            ]
        )

    def escalate_directly(self) -> bool:
        return self._allowed(
            [
                f"ALTER ROLE {SERVING_ROLE} BYPASSRLS",
                "SET ROLE postgres",
                "SET SESSION AUTHORIZATION postgres",
                "SELECT pg_read_file('/etc/hostname')",
                f"SELECT count(*) FROM {SCHEMA}.document_state",
                f"SELECT count(*) FROM {SCHEMA}.chunk",
                f"GRANT {SERVING_ROLE} TO {OPERATOR_ROLE}",
            ]
        )

    def readable_rows_other_tables(self) -> bool:
        """Row estimates of a table it may not read, or for groups it did not verify."""
        engine = self.serving()
        try:
            with engine.connect() as conn:
                learned = []
                with conn.begin():
                    if self.secured:
                        conn.execute(text(f"SELECT {SCHEMA}.set_caller_groups(ARRAY['execs'])"))
                    else:
                        conn.execute(text("SET LOCAL mesh_rag.groups = 'execs'"))
                    for table in ("document_state", "chunk", "embedding_cache", "caller_secret"):
                        learned.append(
                            conn.execute(
                                text(f"SELECT {SCHEMA}.readable_rows(:t)"), {"t": table}
                            ).scalar()
                        )
                with conn.begin():
                    conn.execute(text("SELECT set_config('mesh_rag.groups', 'execs', true)"))
                    forged = conn.execute(
                        text(f"SELECT {SCHEMA}.readable_rows(:t)"), {"t": TABLE}
                    ).scalar()
        finally:
            engine.dispose()
        return any(value is not None for value in learned) or bool(forged)

    def no_password(self) -> bool:
        url = make_url(self.serving_url)
        operator = url.set(username=OPERATOR_ROLE)

        def without_password(login: URL) -> URL:  # URL.set(password=None) keeps the password
            return URL.create(
                login.drivername, login.username, None, login.host, login.port, login.database,
                login.query,
            )  # fmt: skip

        logins = [
            without_password(url),
            url.set(password="wrong"),
            without_password(operator),
            operator.set(password="wrong"),
        ]
        entered = False
        for login in logins:
            engine = create_engine(login, poolclass=NullPool)
            try:
                with engine.connect() as conn:
                    conn.execute(text("SELECT 1"))
                    entered = True
            except DBAPIError as exc:
                message = str(exc)
                assert "password" in message or _refused(exc), message
            finally:
                engine.dispose()
        return entered


def _operator_check(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], bool]:
    """Whether `connections.operator_engine` accepts a URL: outside the local profile, with no
    store URL, so that it only connects and checks the role."""

    def accepted(url: str) -> bool:
        with monkeypatch.context() as patch:
            patch.setenv(settings.PROFILE, "production")
            patch.delenv(settings.DATABASE_URL, raising=False)
            patch.setenv(settings.OPERATOR_DATABASE_URL, url)
            try:
                connections.operator_engine()
            except RuntimeError as exc:
                assert "subject to row-level security" in str(exc), exc
                return False
            return True

    return accepted


def _unsafe_definers(conn: Connection) -> list[str]:
    """SECURITY DEFINER functions the serving role may execute whose search path does not end
    with pg_temp (or includes a schema it may create in), or whose body names a relation
    without its schema."""
    problems = []
    for schema, name, body, _, config in _executable_definers(conn):
        paths = [c.split("=", 1)[1] for c in config if c.startswith("search_path=")]
        if not paths:
            problems.append(f"{schema}.{name}: search_path not pinned")
            continue
        path = [part.strip().strip('"') for part in paths[0].split(",")]
        if path[-1] != "pg_temp" or "pg_temp" in path[:-1] or "$user" in path:
            problems.append(f"{schema}.{name}: search_path {paths[0]!r} must end with pg_temp")
        for entry in path[:-1]:
            writable = conn.execute(
                text(
                    "SELECT coalesce(has_schema_privilege(:role, to_regnamespace(:s), 'CREATE'),"
                    " false)"
                ),
                {"role": SERVING_ROLE, "s": entry},
            ).scalar()
            if writable:
                problems.append(f"{schema}.{name}: the serving role may create in {entry}")
        for unqualified in _unqualified_relations(body):
            problems.append(f"{schema}.{name}: names relation {unqualified!r} without its schema")
    return problems


_KEYWORD = re.compile(r"\b(FROM|JOIN|UPDATE|INTO|TABLE)\s+", re.IGNORECASE)
_NAME = re.compile(r'("[^"]+"|[A-Za-z_][A-Za-z0-9_$]*)(\s*\.\s*)?')


def _unqualified_relations(body: str) -> list[str]:
    """Relation names after FROM/JOIN/UPDATE/INSERT INTO/DELETE FROM without a schema; a name
    followed by "(" is a function (never looked up in pg_temp), a CTE's name is its own."""
    ctes = {m.lower() for m in re.findall(r"\b(\w+)\s+AS\s+(?:NOT\s+)?(?:MATERIALIZED\s+)?\(",
                                          body, re.IGNORECASE)}  # fmt: skip
    found = []
    for keyword in _KEYWORD.finditer(body):
        before = body[: keyword.start()].rstrip().split()
        previous = before[-1].upper() if before else ""
        word = keyword.group(1).upper()
        if word == "FROM" and previous == "DISTINCT":
            continue  # IS [NOT] DISTINCT FROM
        call = re.search(r"\(\s*(\w+)\s*$", body[: keyword.start()])
        if word == "FROM" and call and call.group(1).upper() != "SELECT":
            continue  # EXTRACT(field FROM ...), substring(x FROM ...)
        if word == "INTO" and previous != "INSERT":
            continue  # PL/pgSQL SELECT ... INTO variable
        if word == "TABLE" and previous not in ("", ";"):
            continue
        rest = body[keyword.end() :]
        if re.match(r"(ROWS\s+FROM|LATERAL|ONLY)\b|\(", rest, re.IGNORECASE):
            continue
        name = _NAME.match(rest)
        if name is None or name.group(2):
            continue  # qualified
        after = rest[name.end() :].lstrip()
        if after.startswith("(") or name.group(1).lower() in ctes:
            continue
        found.append(name.group(1))
    return found


@pytest.fixture
def marker_cleanup() -> Iterator[None]:
    yield
    for leftover in Path(tempfile.gettempdir()).glob("mesh_rag_attack_*"):
        leftover.unlink(missing_ok=True)


def test_every_release_with_the_serving_role_withstands_the_attacks(
    database_url: str, monkeypatch: pytest.MonkeyPatch, marker_cleanup: None
) -> None:
    owner = _baseline_store(database_url)
    serving_url = _login(database_url, SERVING_ROLE)
    database = make_url(database_url).database
    assert database
    checked = []
    for revision in _revisions()[1:]:
        _upgrade(owner, revision)
        if not _has_serving_role(owner):
            continue
        secured = _secured(revision)
        outcome = Attacks(owner, serving_url, database, secured).run(_operator_check(monkeypatch))
        succeeded = sorted(name for name, gained in outcome.items() if gained)
        if secured:
            assert succeeded == [], f"revision {revision}: attacks succeeded: {succeeded}"
            with owner.connect() as conn:
                assert _unsafe_definers(conn) == [], revision
            _the_caller_still_reads_its_rows(serving_url)
        else:
            assert set(succeeded) >= HOLES_BEFORE, (revision, succeeded)
        assert not _serving_bypasses(owner)
        checked.append(revision)
    assert checked[-1] == head_revision()
    assert SECURED_SINCE in checked and len(checked) >= 2
    owner.dispose()


def _the_caller_still_reads_its_rows(serving_url: str) -> None:
    """What the attacks may not break: a caller's own groups, through the function."""
    engine = create_engine(serving_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:

            def seen(groups: list[str]) -> tuple[int, float | None]:
                with conn.begin():
                    act_as_caller(conn, groups)
                    estimate = conn.execute(
                        text(f"SELECT {SCHEMA}.readable_rows(:t)"), {"t": TABLE}
                    ).scalar()
                    return _count(conn), estimate

            assert seen([]) == (0, 0.0)
            assert seen(["execs"])[0] == EXEC_ONLY
            rows, estimate = seen(["employees", "hr"])
            assert rows == 50 and estimate is not None and 40 <= estimate <= 60
            assert seen(["contractors"]) == (0, 0.0)
    finally:
        engine.dispose()


def test_security_definer_functions_pin_pg_temp_last_and_qualify_names(engine: Engine) -> None:
    with engine.connect() as conn:
        definers = _executable_definers(conn)
        names = {f"{schema}.{name}" for schema, name, *_ in definers}
        assert {f"{SCHEMA}.set_caller_groups", f"{SCHEMA}.caller_groups"} <= names
        assert _unsafe_definers(conn) == []
        every = conn.execute(
            text(
                "SELECT p.proname, coalesce(p.proconfig, '{}') FROM pg_catalog.pg_proc p "
                "JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace "
                "WHERE n.nspname = :schema AND p.prosecdef"
            ),
            {"schema": SCHEMA},
        ).all()
    for name, config in every:  # executable by the serving role or not
        assert "search_path=pg_catalog, pg_temp" in config, (name, config)
    # The checker itself finds what it is for.
    assert _unqualified_relations("SELECT c.oid FROM pg_class c JOIN pg_namespace n ON true") == [
        "pg_class",
        "pg_namespace",
    ]
    assert (
        _unqualified_relations(
            "SELECT x IS DISTINCT FROM y, EXTRACT(epoch FROM now()) FROM pg_catalog.pg_class "
            "JOIN ROWS FROM (unnest(a)) AS e ON true"
        )
        == []
    )


def test_the_migration_checks_groups_with_the_contracts_pattern() -> None:
    path = next((MIGRATIONS / "versions").glob(f"{SECURED_SINCE}_*.py"))
    spec = importlib.util.spec_from_file_location("hardening", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.GROUP_PATTERN == GROUP_PATTERN


@pytest.mark.parametrize(
    "groups", [["x,execs"], ["employees", "x,execs"], ["execs\n"], [""], ["-execs"], "execs"]
)
def test_a_caller_group_no_contract_could_name_is_refused_before_any_sql(groups: object) -> None:
    with pytest.raises(InvalidCallerGroup):
        caller_groups(groups)  # type: ignore[arg-type]


def test_caller_groups_are_sorted_without_repeats() -> None:
    assert caller_groups(("hr", "employees", "hr")) == ["employees", "hr"]
    assert caller_groups([]) == []


def test_the_local_server_asks_the_serving_and_operator_roles_for_their_passwords(
    server_url: str, services_home: Path
) -> None:
    with create_engine(server_url, poolclass=NullPool).connect() as conn:
        data_dir = Path(str(conn.execute(text("SHOW data_directory")).scalar()))
        rules = conn.execute(
            text(
                "SELECT type, user_name, auth_method FROM pg_catalog.pg_hba_file_rules "
                "WHERE error IS NULL ORDER BY rule_number"
            )
        ).all()
        found = conn.execute(
            text("SELECT rolname, rolbypassrls FROM pg_catalog.pg_roles WHERE rolname IN (:s, :o)"),
            {"s": SERVING_ROLE, "o": OPERATOR_ROLE},
        ).all()
        roles = {str(name): bool(bypasses) for name, bypasses in found}
    assert (data_dir / "pg_hba.conf").read_text() == HBA
    # Only the owner is trusted (over the server's private socket); everyone else: scram.
    assert {(t, tuple(u), m) for t, u, m in rules if m == "trust"} <= {
        ("local", ("postgres",), "trust"),
        ("host", ("postgres",), "trust"),
    }
    assert [m for t, u, m in rules if u == ["all"] and t in ("local", "host")] == [
        "scram-sha-256"
    ] * 3
    assert roles == {SERVING_ROLE: False, OPERATOR_ROLE: True}
    credentials = credentials_path(data_dir)
    assert credentials.parent == services_home  # MESH_RAG_HOME
    assert credentials.stat().st_mode & 0o777 == 0o600


def test_the_operator_view_needs_a_role_that_bypasses_row_level_security(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner = _baseline_store(database_url)
    _upgrade(owner, head_revision())
    accepted = _operator_check(monkeypatch)
    assert not accepted(_login(database_url, SERVING_ROLE))
    operator = _login(database_url, OPERATOR_ROLE)
    assert accepted(operator)
    reader = create_engine(operator, poolclass=NullPool)
    with reader.connect() as conn:  # no groups: the operator reads every row
        assert _count(conn) == sum(MEMOS.values())
    reader.dispose()
    # A URL that cannot log in is refused with what went wrong, not a traceback.
    monkeypatch.setenv(settings.PROFILE, "production")
    monkeypatch.setenv(
        settings.OPERATOR_DATABASE_URL,
        make_url(operator).set(password="wrong").render_as_string(hide_password=False),
    )
    with pytest.raises(RuntimeError, match="password authentication failed"):
        connections.operator_engine()
    owner.dispose()


def test_the_serving_engine_logs_in_with_the_serving_roles_own_password(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(settings.PROFILE, "local")
    monkeypatch.setenv(settings.DATABASE_URL, database_url)
    monkeypatch.delenv(settings.SERVING_DATABASE_URL, raising=False)
    serving = connections.serving_engine()
    assert serving.url.username == SERVING_ROLE and serving.url.password
    with serving.connect() as conn:
        assert conn.execute(text("SELECT current_user")).scalar() == SERVING_ROLE
    # Outside the local profile nothing is generated: the serving URL is a setting.
    monkeypatch.setenv(settings.PROFILE, "production")
    with pytest.raises(settings.MissingSetting, match=settings.SERVING_DATABASE_URL):
        connections.serving_engine()
    monkeypatch.setenv(settings.SERVING_DATABASE_URL, serving.url.render_as_string(False))
    monkeypatch.delenv(settings.DATABASE_URL)
    assert connections.serving_engine().url.username == SERVING_ROLE
