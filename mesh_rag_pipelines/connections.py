"""The store engine and the S3 client, from settings, with embedded stand-ins as defaults."""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import Engine

from mesh_rag_pipelines import settings
from mesh_rag_pipelines.store.database import database_url, engine_for


def store_engine(url: str | None = None) -> Engine:
    return engine_for(url or database_url())


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
