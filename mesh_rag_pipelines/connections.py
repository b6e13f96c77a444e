"""The store engine and the S3 client, from settings; embedded stand-ins in the local profile."""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import Engine

from mesh_rag_pipelines import settings
from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.governance.access import SERVING_ROLE
from mesh_rag_pipelines.pipeline import SourceAccess
from mesh_rag_pipelines.store.database import database_url, engine_for, source_engine


def store_engine(url: str | None = None) -> Engine:
    return engine_for(url or database_url())


def serving_engine() -> Engine:
    """Retrieval's connection, as the serving role (row-level security applies to it):
    MESH_RAG_SERVING_DATABASE_URL, or the store's server with the serving role's login."""
    configured = os.environ.get(settings.SERVING_DATABASE_URL)
    store = store_engine()  # the schema, roles and policies exist before anyone reads
    if configured:
        return source_engine(configured)
    login = store.url.set(username=SERVING_ROLE, password=None)
    return source_engine(login.render_as_string(hide_password=False))


def operator_engine() -> Engine:
    """The unfiltered operator view: only through a separately configured connection whose
    role bypasses row-level security (the store's owner, or a role with BYPASSRLS)."""
    configured = os.environ.get(settings.OPERATOR_DATABASE_URL)
    if not configured:
        raise RuntimeError(
            f"the operator view needs {settings.OPERATOR_DATABASE_URL}: a connection whose role "
            "bypasses row-level security"
        )
    store_engine()
    return source_engine(configured)


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
    from mesh_rag_pipelines.defs.resources import LandingZone

    return LandingZone(endpoint_url=endpoint_url).get_client()


def source_access(contract: DataProductContract) -> SourceAccess:
    """How a command outside Dagster reaches a product's source: the store, and an S3 client
    only for a landing zone (other products never start or ask S3)."""
    s3 = s3_client() if contract.source.kind == "s3_landing" else None
    return SourceAccess(store_engine(), s3)
