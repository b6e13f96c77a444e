"""API keys: service identities for the retrieval service, each with its groups and an expiry.

A key reads `mrk_<id>_<secret>`. Only the secret's SHA-256 is stored; the full key is shown once,
when it is made. Keys are made, listed and revoked by the store's owner; the service, as the
serving role, cannot read the table and asks `mesh_rag.api_key_identity(id, secret_hash)`, which
answers a valid, unrevoked, unexpired key's name and groups. It asks on every request, so a
revoked key is refused on the very next one.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, func, insert, select, text, update

from mesh_rag_pipelines.governance.access import caller_groups
from mesh_rag_pipelines.store.schema import SCHEMA, ApiKey

PREFIX = "mrk"
_KEY = re.compile(rf"^{PREFIX}_([0-9a-f]{{16}})_([A-Za-z0-9_-]{{20,}})$")


@dataclass(frozen=True)
class KeyIdentity:
    name: str
    groups: tuple[str, ...]


@dataclass(frozen=True)
class KeyListing:
    id: str
    name: str
    groups: list[str]
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    created_by: str | None


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_key(key: str) -> tuple[str, str] | None:
    """(id, secret) of a string shaped like an API key, else None."""
    found = _KEY.match(key)
    return (found.group(1), found.group(2)) if found else None


def create_key(
    engine: Engine,
    name: str,
    groups: list[str],
    expires_at: datetime,
    created_by: str | None = None,
) -> tuple[str, str]:
    """A new key (as the owner): its id and the full key, which is never seen again."""
    if not name.strip():
        raise ValueError("an API key needs a name: who or what uses it")
    if not groups:
        raise ValueError("an API key needs at least one group: the groups its caller reads as")
    checked = caller_groups(groups)
    key_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
    with engine.begin() as conn:
        conn.execute(
            insert(ApiKey).values(
                id=key_id,
                name=name.strip(),
                secret_hash=secret_hash(secret),
                groups=checked,
                expires_at=expires_at,
                created_by=created_by,
            )
        )
    return key_id, f"{PREFIX}_{key_id}_{secret}"


def list_keys(engine: Engine) -> list[KeyListing]:
    """Every key, oldest first, without anything of its secret."""
    query = select(
        ApiKey.id,
        ApiKey.name,
        ApiKey.groups,
        ApiKey.created_at,
        ApiKey.expires_at,
        ApiKey.revoked_at,
        ApiKey.created_by,
    ).order_by(ApiKey.created_at, ApiKey.id)
    with engine.connect() as conn:
        return [KeyListing(**row._mapping) for row in conn.execute(query)]


def revoke_key(engine: Engine, key_id: str) -> bool:
    """Revoke a key now; False if no unrevoked key has that id."""
    with engine.begin() as conn:
        done = conn.execute(
            update(ApiKey)
            .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=func.now())
        )
        return done.rowcount == 1


def key_identity(serving: Engine, key: str) -> KeyIdentity | None:
    """Who a presented key belongs to, asked of the store each time (as the serving role);
    None for a malformed, unknown, revoked or expired key."""
    parsed = parse_key(key)
    if parsed is None:
        return None
    key_id, secret = parsed
    with serving.connect() as conn:
        row = conn.execute(
            text(f"SELECT name, groups FROM {SCHEMA}.api_key_identity(:id, :hash)"),
            {"id": key_id, "hash": secret_hash(secret)},
        ).first()
    return KeyIdentity(row.name, tuple(row.groups)) if row else None
