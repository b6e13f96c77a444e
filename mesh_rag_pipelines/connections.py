"""The store engine and the S3 client, from settings; embedded stand-ins in the local profile."""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from mesh_rag_pipelines import settings
from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.governance.access import OPERATOR_ROLE, SERVING_ROLE
from mesh_rag_pipelines.pipeline import SourceAccess
from mesh_rag_pipelines.store.database import database_url, engine_for, source_engine


def store_engine(url: str | None = None) -> Engine:
    return engine_for(url or database_url())


def serving_engine() -> Engine:
    """Retrieval's connection, as the serving role (row-level security applies to it), with its
    own password: MESH_RAG_SERVING_DATABASE_URL; in the local profile, when it is unset, the
    embedded server's serving login with its generated password. The store is migrated first
    when this process has the owner's URL (or the local profile); a retrieval service given only
    the serving URL needs nothing of the owner's."""
    configured = os.environ.get(settings.SERVING_DATABASE_URL)
    if not configured and not settings.local_profile():
        settings.required(
            settings.SERVING_DATABASE_URL, "the serving role's URL, with its own password"
        )
    if configured:
        if os.environ.get(settings.DATABASE_URL) or settings.local_profile():
            store_engine()  # the schema, roles and policies exist before anyone reads
        return source_engine(configured)
    store = store_engine()
    owner_url = store.url.render_as_string(hide_password=False)
    from mesh_rag_pipelines.services.embedded_postgres import local_login

    try:
        login = local_login(owner_url, SERVING_ROLE)
    except (OSError, KeyError, SQLAlchemyError) as exc:
        raise settings.MissingSetting(
            f"{settings.SERVING_DATABASE_URL} is not set and the store is not the local "
            f"profile's embedded PostgreSQL, whose serving password is generated ({exc}): set "
            f"{settings.SERVING_DATABASE_URL} to the serving role's URL with its password"
        ) from exc
    return source_engine(login)


def operator_engine() -> Engine:
    """The unfiltered operator view: only through a separately configured connection whose
    role bypasses row-level security (BYPASSRLS, or a superuser). Any other role, the serving
    role first of all, is refused: under the policy it would read nothing, or only what the
    groups of whoever set them allow."""
    configured = os.environ.get(settings.OPERATOR_DATABASE_URL)
    if not configured:
        raise RuntimeError(
            f"the operator view needs {settings.OPERATOR_DATABASE_URL}: a connection whose role "
            "bypasses row-level security"
        )
    if os.environ.get(settings.DATABASE_URL) or settings.local_profile():
        store_engine()
    engine = source_engine(configured)
    try:
        with engine.connect() as conn:
            role, bypasses = conn.execute(
                text(
                    "SELECT r.rolname, r.rolsuper OR r.rolbypassrls "
                    "FROM pg_catalog.pg_roles AS r WHERE r.rolname = current_user"
                )
            ).one()
    except SQLAlchemyError as exc:
        raise RuntimeError(
            f"the operator view cannot connect through {settings.OPERATOR_DATABASE_URL}: "
            f"{getattr(exc, 'orig', exc)}"
        ) from exc
    if role == SERVING_ROLE or not bypasses:
        raise RuntimeError(
            f"{settings.OPERATOR_DATABASE_URL} connects as role {role!r}, which is subject to "
            "row-level security: the operator view needs a role with BYPASSRLS (the local "
            f"profile's is {OPERATOR_ROLE!r}), never the serving role"
        )
    return engine


def s3_endpoint_url() -> str | None:
    """The configured S3 endpoint; in the local profile, the loopback server when none is set;
    otherwise None: AWS's own endpoint for the region."""
    configured = os.environ.get(settings.S3_ENDPOINT_URL)
    if configured or not settings.local_profile():
        return configured
    from mesh_rag_pipelines.services.local_s3 import ensure_local_s3

    return ensure_local_s3(settings.home())


def s3_client(endpoint_url: str | None = None) -> Any:
    """An S3 client made by the landing zone's resource (dagster-aws), for code outside runs."""
    from mesh_rag_pipelines.orchestration.resources import LandingZone

    return LandingZone(endpoint_url=endpoint_url).get_client()


def source_access(contract: DataProductContract) -> SourceAccess:
    """How a command outside Dagster reaches a product's source: the store, and an S3 client
    only for a landing zone (other products never start or ask S3)."""
    s3 = s3_client() if contract.source.kind == "s3_landing" else None
    return SourceAccess(store_engine(), s3)
