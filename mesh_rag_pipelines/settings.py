"""Environment variables read by the project, with their defaults, in one place."""

from __future__ import annotations

import os
from pathlib import Path

DATABASE_URL = "MESH_RAG_DATABASE_URL"
SERVING_DATABASE_URL = "MESH_RAG_SERVING_DATABASE_URL"
OPERATOR_DATABASE_URL = "MESH_RAG_OPERATOR_DATABASE_URL"
HOME = "MESH_RAG_HOME"
CONTRACTS_DIR = "MESH_RAG_CONTRACTS_DIR"
S3_ENDPOINT_URL = "MESH_RAG_S3_ENDPOINT_URL"
OPENAI_API_KEY = "OPENAI_API_KEY"
OPENAI_BASE_URL = "OPENAI_BASE_URL"
PII_HASH_KEY = "MESH_RAG_PII_HASH_KEY"
ANSWER_MODEL = "MESH_RAG_ANSWER_MODEL"

# Every product is split into this many static hash shards (Dagster partitions).
SHARD_COUNT = 4
# Memory for building an HNSW index in one go; a graph larger than this builds much slower.
HNSW_BUILD_MEMORY = "1GB"


def home() -> Path:
    """Folder for embedded services' data: the embedded PostgreSQL and the local S3 endpoint."""
    path = Path(os.environ.get(HOME) or Path.cwd() / ".mesh_rag").resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def contracts_dir() -> Path | None:
    value = os.environ.get(CONTRACTS_DIR)
    return Path(value) if value else None


def pii_hash_key() -> bytes | None:
    """The secret of keyed PII hashes; None if unset (contracts that hash then refuse to run)."""
    value = os.environ.get(PII_HASH_KEY)
    return value.encode() if value else None
