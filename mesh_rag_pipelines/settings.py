"""Environment variables read by the project, with their defaults, in one place."""

from __future__ import annotations

import os
from pathlib import Path

DATABASE_URL = "MESH_RAG_DATABASE_URL"
SERVING_DATABASE_URL = "MESH_RAG_SERVING_DATABASE_URL"
OPERATOR_DATABASE_URL = "MESH_RAG_OPERATOR_DATABASE_URL"
PROFILE = "MESH_RAG_PROFILE"
HOME = "MESH_RAG_HOME"
CONTRACTS_DIR = "MESH_RAG_CONTRACTS_DIR"
PLATFORM_POLICY = "MESH_RAG_PLATFORM_POLICY"
S3_ENDPOINT_URL = "MESH_RAG_S3_ENDPOINT_URL"
OPENAI_API_KEY = "OPENAI_API_KEY"
OPENAI_BASE_URL = "OPENAI_BASE_URL"
PII_HASH_KEY = "MESH_RAG_PII_HASH_KEY"
ANSWER_MODEL = "MESH_RAG_ANSWER_MODEL"

# The repository (or installed package's parent): where dagster.yaml and workspace.yaml live.
REPO_ROOT = Path(__file__).resolve().parent.parent
# Static hash shards (Dagster partitions) of a product whose contract does not set `shards`.
DEFAULT_SHARDS = 4
# Memory for building an HNSW index in one go; a graph larger than this builds much slower.
HNSW_BUILD_MEMORY = "1GB"


class MissingSetting(RuntimeError):
    """A setting a process needs is not set (outside the local profile nothing stands in)."""


def local_profile() -> bool:
    """MESH_RAG_PROFILE=local: embedded PostgreSQL and a loopback S3 server stand in for unset
    settings. In any other environment an unset setting is an error, never a throwaway store."""
    return os.environ.get(PROFILE) == "local"


def required(name: str, meaning: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise MissingSetting(
            f"{name} is not set: {meaning}. (On one machine, {PROFILE}=local starts embedded "
            "services instead.)"
        )
    return value


def store_url() -> str:
    return required(DATABASE_URL, "the store's PostgreSQL URL (with pgvector)")


def home() -> Path:
    """Folder for local data: the embedded PostgreSQL, the local S3 endpoint and the Dagster
    instance. One per user, not per working directory, so every command finds the same store."""
    path = Path(os.environ.get(HOME) or Path.home() / ".mesh_rag").expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def contracts_dir() -> Path | None:
    value = os.environ.get(CONTRACTS_DIR)
    return Path(value) if value else None


def platform_policy() -> Path | None:
    """The platform policy file, if named; else the contracts folder's platform_policy.yaml
    (the nearest at or above it) governs (governance/policy.py)."""
    value = os.environ.get(PLATFORM_POLICY)
    return Path(value).expanduser() if value else None


def pii_hash_key() -> bytes | None:
    """The secret of keyed PII hashes; None if unset (contracts that hash then refuse to run)."""
    value = os.environ.get(PII_HASH_KEY)
    return value.encode() if value else None
