"""Engines and clients made from the settings: the store (as its owner, as the serving role, as
the operator), S3, and how a product's source is reached; embedded stand-ins in the local
profile. The only place the settings become connections."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from mesh_rag_pipelines import settings as settings_module
from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.governance.access import OPERATOR_ROLE, SERVING_ROLE
from mesh_rag_pipelines.settings import (
    AWS_ACCESS_KEY_ID,
    DATABASE_URL,
    OPERATOR_DATABASE_URL,
    S3_ENDPOINT_URL,
    SERVING_DATABASE_URL,
    MissingSetting,
    Settings,
)
from mesh_rag_pipelines.sources.base import SourceContext
from mesh_rag_pipelines.store.database import engine_for, psycopg2_url, source_engine

S3_MAX_ATTEMPTS = 5


def _settings(given: Settings | None) -> Settings:
    return given if given is not None else settings_module.current()


def store_url(settings: Settings | None = None) -> str:
    """The store's URL, as its owner; in the local profile, the embedded PostgreSQL's when none
    is set (started if need be)."""
    settings = _settings(settings)
    configured = settings.get(DATABASE_URL)
    if configured or not settings.local:
        return psycopg2_url(
            configured or settings.required(DATABASE_URL, "the store's PostgreSQL URL")
        )
    from mesh_rag_pipelines.services.embedded_postgres import ensure_embedded_postgres

    return ensure_embedded_postgres(settings.home / "pg")


def store_engine(settings: Settings | None = None) -> Engine:
    """The store as its owner, migrated to this code's schema."""
    return engine_for(store_url(settings))


def serving_engine(settings: Settings | None = None) -> Engine:
    """Retrieval's connection, as the serving role (row-level security applies to it), with its
    own password: MESH_RAG_SERVING_DATABASE_URL; in the local profile, when it is unset, the
    embedded server's serving login with its generated password. It migrates nothing and needs
    nothing of the owner's, except in the local profile, where the same machine's store is
    brought up (and migrated) first."""
    settings = _settings(settings)
    configured = settings.get(SERVING_DATABASE_URL)
    if not settings.local:
        return source_engine(
            configured
            or settings.required(SERVING_DATABASE_URL, "the serving role's URL, with its password")
        )
    store = store_engine(settings)
    if configured:
        return source_engine(configured)
    from mesh_rag_pipelines.services.embedded_postgres import local_login

    owner_url = store.url.render_as_string(hide_password=False)
    try:
        login = local_login(owner_url, SERVING_ROLE)
    except (OSError, KeyError, SQLAlchemyError) as exc:
        raise MissingSetting(
            f"{SERVING_DATABASE_URL} is not set and the store is not the local profile's "
            f"embedded PostgreSQL, whose serving password is generated ({exc}): set "
            f"{SERVING_DATABASE_URL} to the serving role's URL with its password"
        ) from exc
    return source_engine(login)


def operator_engine(settings: Settings | None = None) -> Engine:
    """The unfiltered operator view: only through a separately configured connection whose
    role bypasses row-level security (BYPASSRLS, or a superuser). Any other role, the serving
    role first of all, is refused: under the policy it would read nothing, or only what the
    groups of whoever set them allow."""
    settings = _settings(settings)
    configured = settings.get(OPERATOR_DATABASE_URL)
    if not configured:
        raise RuntimeError(
            f"the operator view needs {OPERATOR_DATABASE_URL}: a connection whose role "
            "bypasses row-level security"
        )
    if settings.local:
        store_engine(settings)
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
            f"the operator view cannot connect through {OPERATOR_DATABASE_URL}: "
            f"{getattr(exc, 'orig', exc)}"
        ) from exc
    if role == SERVING_ROLE or not bypasses:
        raise RuntimeError(
            f"{OPERATOR_DATABASE_URL} connects as role {role!r}, which is subject to "
            "row-level security: the operator view needs a role with BYPASSRLS (the local "
            f"profile's is {OPERATOR_ROLE!r}), never the serving role"
        )
    return engine


def s3_endpoint_url(settings: Settings | None = None) -> str | None:
    """The configured S3 endpoint; in the local profile, the loopback server when none is set;
    otherwise None: AWS's own endpoint for the region."""
    settings = _settings(settings)
    configured = settings.get(S3_ENDPOINT_URL)
    if configured or not settings.local:
        return configured
    from mesh_rag_pipelines.services.local_s3 import ensure_local_s3

    return ensure_local_s3(settings.home)


def s3_client(settings: Settings | None = None, **options: Any) -> Any:
    """An S3 client through dagster-aws's constructor (the landing zone's resource passes its
    own fields as `options`): any S3-compatible endpoint; the loopback server, which takes any
    credentials, when no keys are given."""
    from dagster_aws.s3.utils import construct_s3_client

    settings = _settings(settings)
    endpoint = options.pop("endpoint_url", None) or s3_endpoint_url(settings)
    local = endpoint is not None and urlparse(endpoint).hostname in ("127.0.0.1", "localhost")
    if local and not (options.get("aws_access_key_id") or settings.get(AWS_ACCESS_KEY_ID)):
        options.update(aws_access_key_id="local", aws_secret_access_key="local")
    options.setdefault("region_name", settings.aws_region)
    options.setdefault("max_attempts", S3_MAX_ATTEMPTS)
    return construct_s3_client(endpoint_url=endpoint, **options)


def source_context(
    contract: DataProductContract, settings: Settings | None = None
) -> SourceContext:
    """How a command outside Dagster reaches a product's source: the store, the settings that
    name source databases, and an S3 client only for a kind that reads S3 (other products
    never start or ask S3)."""
    settings = _settings(settings)
    return SourceContext(
        engine=store_engine(settings),
        settings=settings,
        s3=s3_client(settings) if contract.source.needs_s3 else None,
    )
