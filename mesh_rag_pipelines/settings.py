"""Every setting the project reads, in one place: the names of its environment variables, and one
`Settings` object read from the environment where a process starts its work (a command, a run's
resources, a sensor tick). Nothing else reads the environment, and nothing writes it at import.

In the local profile (MESH_RAG_PROFILE=local) unset settings mean the embedded services
(connections.py starts them); in any other environment an unset required setting is an error
naming the variable, never a throwaway store.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

DATABASE_URL = "MESH_RAG_DATABASE_URL"
SERVING_DATABASE_URL = "MESH_RAG_SERVING_DATABASE_URL"
OPERATOR_DATABASE_URL = "MESH_RAG_OPERATOR_DATABASE_URL"
PROFILE = "MESH_RAG_PROFILE"
HOME = "MESH_RAG_HOME"
CONTRACTS_DIR = "MESH_RAG_CONTRACTS_DIR"
PLATFORM_POLICY = "MESH_RAG_PLATFORM_POLICY"
S3_ENDPOINT_URL = "MESH_RAG_S3_ENDPOINT_URL"
AWS_ACCESS_KEY_ID = "AWS_ACCESS_KEY_ID"
AWS_REGION = "AWS_REGION"
OPENAI_API_KEY = "OPENAI_API_KEY"
OPENAI_BASE_URL = "OPENAI_BASE_URL"
PII_HASH_KEY = "MESH_RAG_PII_HASH_KEY"
ANSWER_MODEL = "MESH_RAG_ANSWER_MODEL"
DAGSTER_HOME = "DAGSTER_HOME"
# The retrieval service (`mesh-rag serve`): who it trusts, and how long it keeps its query log.
OIDC_ISSUER = "MESH_RAG_OIDC_ISSUER"
OIDC_AUDIENCE = "MESH_RAG_OIDC_AUDIENCE"
OIDC_GROUPS_CLAIM = "MESH_RAG_OIDC_GROUPS_CLAIM"
OIDC_JWKS_URL = "MESH_RAG_OIDC_JWKS_URL"
QUERY_LOG_RETENTION = "MESH_RAG_QUERY_LOG_RETENTION"
# A client of the service (`mesh-rag query` and `answer` use it when set), with its token.
SERVICE_URL = "MESH_RAG_SERVICE_URL"
SERVICE_TOKEN = "MESH_RAG_SERVICE_TOKEN"

# The repository (or installed package's parent): where dagster.yaml and workspace.yaml live.
REPO_ROOT = Path(__file__).resolve().parent.parent
# Static hash shards (Dagster partitions) of a product whose contract does not set `shards`.
DEFAULT_SHARDS = 4
# Memory for building an HNSW index in one go; a graph larger than this builds much slower.
HNSW_BUILD_MEMORY = "1GB"
DEFAULT_AWS_REGION = "us-east-1"
DEFAULT_OIDC_GROUPS_CLAIM = "groups"
DEFAULT_QUERY_LOG_RETENTION = "30d"


class MissingSetting(RuntimeError):
    """A setting a process needs is not set (outside the local profile nothing stands in)."""


@dataclass(frozen=True)
class Settings:
    """One reading of the environment; empty values count as unset."""

    # Not in the repr: the environment holds passwords and keys, and a repr reaches logs.
    environ: Mapping[str, str] = field(repr=False)

    @classmethod
    def from_env(cls) -> Settings:
        return cls(dict(os.environ))

    def get(self, name: str) -> str | None:
        """A variable by name: the project's own, or one a contract names (database_url_env)."""
        return self.environ.get(name) or None

    def required(self, name: str, meaning: str) -> str:
        value = self.get(name)
        if not value:
            raise MissingSetting(
                f"{name} is not set: {meaning}. (On one machine, {PROFILE}=local starts embedded "
                "services instead.)"
            )
        return value

    @property
    def local(self) -> bool:
        """MESH_RAG_PROFILE=local: embedded PostgreSQL and a loopback S3 server stand in for
        unset settings."""
        return self.get(PROFILE) == "local"

    @property
    def home(self) -> Path:
        """Folder for local data: the embedded PostgreSQL, the local S3 endpoint and the Dagster
        instance. One per user, not per working directory, so every command finds the same
        store."""
        path = Path(self.get(HOME) or Path.home() / ".mesh_rag").expanduser().resolve()
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def dagster_home(self) -> Path | None:
        value = self.get(DAGSTER_HOME)
        return Path(value) if value else None

    @property
    def contracts_dir(self) -> Path | None:
        value = self.get(CONTRACTS_DIR)
        return Path(value) if value else None

    @property
    def platform_policy(self) -> Path | None:
        """The platform policy file, if named; else the contracts folder's platform_policy.yaml
        (the nearest at or above it) governs (governance/policy.py)."""
        value = self.get(PLATFORM_POLICY)
        return Path(value).expanduser() if value else None

    @property
    def pii_hash_key(self) -> bytes | None:
        """The secret of keyed PII hashes; None if unset (contracts that hash refuse to run)."""
        value = self.get(PII_HASH_KEY)
        return value.encode() if value else None

    @property
    def aws_region(self) -> str:
        return self.get(AWS_REGION) or DEFAULT_AWS_REGION


# Read by Hugging Face's libraries when they are imported: never the hub (the bundled model is
# the package's own), no progress bars or notices in a run's log.
_OFFLINE_MODELS = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
}


def keep_models_offline() -> None:
    """Before a model library is first imported (not at this module's import): where the
    environment sets nothing else, no model library reaches a hub."""
    for name, value in _OFFLINE_MODELS.items():
        os.environ.setdefault(name, value)


def current() -> Settings:
    """The environment as it is now, for code that starts work outside a command or a run."""
    return Settings.from_env()
