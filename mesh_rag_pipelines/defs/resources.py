"""Dagster resources: the index store, the S3 landing zone and the embedding models.

Clients are created in `setup_for_execution`, never at import; every setting comes from an
environment variable (see settings.py), and an unset one selects the embedded default.
"""

from __future__ import annotations

import os
from typing import Any

import dagster as dg
from pydantic import PrivateAttr
from sqlalchemy import Engine

from mesh_rag_pipelines import settings
from mesh_rag_pipelines.connections import s3_client, store_engine
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


class LandingZone(dg.ConfigurableResource):
    """Any S3-compatible endpoint; unset means the local loopback server."""

    endpoint_url: str | None = None

    def client(self) -> Any:
        return s3_client(self.endpoint_url)


class EmbeddingModels(dg.ConfigurableResource):
    """Local MiniLM, or an OpenAI-compatible endpoint for contracts that ask for one."""

    openai_api_key: str | None = None
    openai_base_url: str | None = None

    def for_spec(self, spec: EmbeddingSpec) -> Embedder:
        return embedder_for(spec, api_key=self.openai_api_key, base_url=self.openai_base_url)


def default_resources() -> dict[str, dg.ConfigurableResource]:
    return {
        "index_store": IndexStore(database_url=optional_env(settings.DATABASE_URL)),
        "landing_zone": LandingZone(endpoint_url=optional_env(settings.S3_ENDPOINT_URL)),
        "embedding_models": EmbeddingModels(
            openai_api_key=optional_env(settings.OPENAI_API_KEY),
            openai_base_url=optional_env(settings.OPENAI_BASE_URL),
        ),
    }
