"""Dagster resources: the index store, the S3 landing zone and the embedding models.

Clients are created in `setup_for_execution`, never at import; every setting comes from an
environment variable (see settings.py). Outside the local profile a code location without a
store fails to load, naming the variable; in it, unset settings select embedded services.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any
from urllib.parse import urlparse

import dagster as dg
from dagster_aws.s3 import S3Resource
from dagster_aws.s3.utils import construct_s3_client
from pydantic import PrivateAttr
from sqlalchemy import Engine

from mesh_rag_pipelines import settings
from mesh_rag_pipelines.connections import s3_endpoint_url, store_engine
from mesh_rag_pipelines.contracts import EmbeddingSpec
from mesh_rag_pipelines.embedding import Embedder, embedder_for


def optional_env(name: str) -> Any:
    """EnvVar when the variable is set (resolved by Dagster at run time), else None."""
    return dg.EnvVar(name) if os.environ.get(name) else None


class IndexStore(dg.ConfigurableResource):
    """PostgreSQL with pgvector: document state, chunk set, index versions."""

    database_url: str | None = None
    _engine: Engine | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._engine = store_engine(self.database_url)

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = store_engine(self.database_url)
        return self._engine


class LandingZone(S3Resource):
    """S3 landing zones through dagster-aws's S3 resource: any S3-compatible endpoint, AWS's own
    when none is set; in the local profile, the loopback server (which takes any credentials)."""

    max_attempts: int = 5

    def get_client(self) -> Any:
        endpoint = self.endpoint_url or s3_endpoint_url()
        local = endpoint is not None and urlparse(endpoint).hostname in ("127.0.0.1", "localhost")
        anonymous_local = local and not (self.aws_access_key_id or os.environ.get(_AWS_KEY))
        return construct_s3_client(
            max_attempts=self.max_attempts,
            region_name=self.region_name or os.environ.get("AWS_REGION", "us-east-1"),
            endpoint_url=endpoint,
            profile_name=self.profile_name,
            use_ssl=self.use_ssl,
            verify=self.verify,
            aws_access_key_id="local" if anonymous_local else self.aws_access_key_id,
            aws_secret_access_key="local" if anonymous_local else self.aws_secret_access_key,
            aws_session_token=self.aws_session_token,
        )

    def get_object_to_set_on_execution_context(self) -> Any:
        # The resource itself, not a client made at every run's start: only S3 sources ask
        # for one, so a run of another product never starts the local server or opens a client.
        return self


_AWS_KEY = "AWS_ACCESS_KEY_ID"


class EmbeddingModels(dg.ConfigurableResource):
    """Local MiniLM, or an OpenAI-compatible endpoint for contracts that ask for one."""

    openai_api_key: str | None = None
    openai_base_url: str | None = None

    def for_spec(self, spec: EmbeddingSpec) -> Embedder:
        return embedder_for(spec, api_key=self.openai_api_key, base_url=self.openai_base_url)


_SETTINGS = (
    settings.DATABASE_URL,
    settings.S3_ENDPOINT_URL,
    settings.OPENAI_API_KEY,
    settings.OPENAI_BASE_URL,
)


def default_resources() -> dict[str, dg.ConfigurableResource]:
    """The resources every product uses; the same objects while the settings are the same,
    so that products built separately (one component each) merge into one code location."""
    if not settings.local_profile():
        settings.store_url()
    return _resources(tuple(bool(os.environ.get(name)) for name in _SETTINGS))


@cache
def _resources(_set: tuple[bool, ...]) -> dict[str, dg.ConfigurableResource]:
    return {
        "index_store": IndexStore(database_url=optional_env(settings.DATABASE_URL)),
        "landing_zone": LandingZone(endpoint_url=optional_env(settings.S3_ENDPOINT_URL)),
        "embedding_models": EmbeddingModels(
            openai_api_key=optional_env(settings.OPENAI_API_KEY),
            openai_base_url=optional_env(settings.OPENAI_BASE_URL),
        ),
    }
