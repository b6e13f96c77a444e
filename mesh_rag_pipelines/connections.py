"""The store engine and the S3 client, from settings, with embedded stand-ins as defaults."""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import Engine

from mesh_rag_pipelines import settings
from mesh_rag_pipelines.governance.access import SERVING_ROLE
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


def s3_endpoint_url() -> str:
    configured = os.environ.get(settings.S3_ENDPOINT_URL)
    if configured:
        return configured
    from mesh_rag_pipelines.services.local_s3 import ensure_local_s3

    return ensure_local_s3(settings.home())


def s3_client(endpoint_url: str | None = None) -> Any:
    """boto3 S3 client; credentials come from the usual AWS chain (local server: any)."""
    import boto3
    from botocore.config import Config

    endpoint = endpoint_url or s3_endpoint_url()
    local = endpoint.startswith("http://127.0.0.1") or endpoint.startswith("http://localhost")
    credentials = (
        {"aws_access_key_id": "local", "aws_secret_access_key": "local"}
        if local and not os.environ.get("AWS_ACCESS_KEY_ID")
        else {}
    )
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=os.environ.get("AWS_REGION", "us-east-1"),
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 5}),
        **credentials,
    )
