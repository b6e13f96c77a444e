"""Dagster resources: the index store, the S3 landing zone and the embedding models.

Clients are created in `setup_for_execution`, never at import, from the settings read when the
run (or sensor tick) starts; a field set on a resource (a deployment may set one, with
`dg.EnvVar`) takes precedence. The resources are the same objects in every code location,
whatever the environment when the code loads: what they connect to is decided at launch.
Outside the local profile a code location without a store fails to load, naming the variable.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import dagster as dg
from dagster_aws.s3 import S3Resource
from pydantic import PrivateAttr
from sqlalchemy import Engine

from mesh_rag_pipelines.connections import s3_client, store_engine
from mesh_rag_pipelines.contracts import DataProductContract, EmbeddingSpec
from mesh_rag_pipelines.embedding import Embedder, embedder_for
from mesh_rag_pipelines.settings import DATABASE_URL, Settings
from mesh_rag_pipelines.sources.base import SourceContext
from mesh_rag_pipelines.store.database import engine_for, psycopg2_url


class IndexStore(dg.ConfigurableResource):
    """PostgreSQL with pgvector: document state, chunk set, index versions."""

    database_url: str | None = None
    _engine: Engine | None = PrivateAttr(default=None)
    _settings: Settings | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._connect()

    def _connect(self) -> None:
        self._settings = Settings.from_env()
        self._engine = (
            engine_for(psycopg2_url(self.database_url))
            if self.database_url
            else store_engine(self._settings)
        )

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._connect()
        assert self._engine is not None
        return self._engine

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._connect()
        assert self._settings is not None
        return self._settings


class LandingZone(S3Resource):
    """S3 landing zones through dagster-aws's S3 resource: any S3-compatible endpoint, AWS's own
    when none is set; in the local profile, the loopback server (which takes any credentials)."""

    max_attempts: int = 5

    def get_client(self) -> Any:
        fields = {
            "endpoint_url": self.endpoint_url,
            "region_name": self.region_name,
            "profile_name": self.profile_name,
            "use_ssl": self.use_ssl,
            "verify": self.verify,
            "aws_access_key_id": self.aws_access_key_id,
            "aws_secret_access_key": self.aws_secret_access_key,
            "aws_session_token": self.aws_session_token,
            "max_attempts": self.max_attempts,
        }
        return s3_client(Settings.from_env(), **{k: v for k, v in fields.items() if v is not None})

    def get_object_to_set_on_execution_context(self) -> Any:
        # The resource itself, not a client made at every run's start: only S3 sources ask
        # for one, so a run of another product never starts the local server or opens a client.
        return self


class EmbeddingModels(dg.ConfigurableResource):
    """Local MiniLM, or an OpenAI-compatible endpoint for contracts that ask for one."""

    openai_api_key: str | None = None
    openai_base_url: str | None = None

    def for_spec(self, spec: EmbeddingSpec) -> Embedder:
        return embedder_for(
            spec,
            api_key=self.openai_api_key,
            base_url=self.openai_base_url,
            settings=Settings.from_env(),
        )


def source_context(
    contract: DataProductContract, index_store: IndexStore, landing_zone: LandingZone
) -> SourceContext:
    """How a run or a sensor reaches a product's source; an S3 client only for a kind that
    reads S3."""
    s3 = landing_zone.get_client() if contract.source.needs_s3 else None
    return SourceContext(index_store.engine, index_store.settings, s3)


def default_resources() -> dict[str, dg.ConfigurableResource]:
    """The resources every product uses, the same objects everywhere, so that products built
    separately (one component each) merge into one code location."""
    settings = Settings.from_env()
    if not settings.local:
        settings.required(DATABASE_URL, "the store's PostgreSQL URL (with pgvector)")
    return _resources()


@cache
def _resources() -> dict[str, dg.ConfigurableResource]:
    return {
        "index_store": IndexStore(),
        "landing_zone": LandingZone(),
        "embedding_models": EmbeddingModels(),
    }
