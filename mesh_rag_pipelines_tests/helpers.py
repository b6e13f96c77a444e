"""Shared test helpers: reading an index back, and building products."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from sqlalchemy import Engine, text

from mesh_rag_pipelines.contracts import DataProductContract, load_contract
from mesh_rag_pipelines.contracts.loader import PRODUCTS_DIR, contract_text, find_contract
from mesh_rag_pipelines.contracts.model import shard_of as _shard_of
from mesh_rag_pipelines.embedding import Embedder
from mesh_rag_pipelines.governance.policy import POLICY_FILE
from mesh_rag_pipelines.pipeline import ShardResult, SyncDeps, sync_shard
from mesh_rag_pipelines.samples import seed_sources
from mesh_rag_pipelines.settings import DEFAULT_SHARDS, Settings
from mesh_rag_pipelines.sources.base import SourceContext
from mesh_rag_pipelines.store.index_versions import get_version, live_versions
from mesh_rag_pipelines.store.index_writer import Embedders
from mesh_rag_pipelines.store.schema import SCHEMA

IndexSnapshot = dict[tuple[str, int], tuple[int, str, str, tuple[str, ...], np.ndarray]]


def shard_of(doc_id: str) -> int:
    """A document's shard in a shipped product (none of them sets `shards`)."""
    return _shard_of(doc_id, DEFAULT_SHARDS)


def index_rows(engine: Engine, product: str, version_id: str | None = None) -> IndexSnapshot:
    """(doc id, chunk no) -> (doc version, text, model, acl groups, vector) of a version, the
    live one by default."""
    version = get_version(engine, version_id) if version_id else live_versions(engine, [product])[0]
    assert version is not None, version_id
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                f"SELECT doc_id, chunk_no, doc_version, text, embedding_model, acl_groups, "
                f"embedding::text AS vec FROM {SCHEMA}.{version.table_name}"
            )
        )
        return {
            (r.doc_id, r.chunk_no): (
                r.doc_version,
                r.text,
                r.embedding_model,
                tuple(r.acl_groups),
                np.array(r.vec.strip("[]").split(","), dtype=np.float32),
            )
            for r in rows
        }


def assert_same_index(actual: IndexSnapshot, expected: IndexSnapshot, atol: float = 1e-5) -> None:
    assert sorted(actual) == sorted(expected)
    for key, (version, chunk_text, model, acl, vector) in expected.items():
        got = actual[key]
        assert got[:4] == (version, chunk_text, model, acl), key
        np.testing.assert_allclose(got[4], vector, atol=atol, err_msg=str(key))


def source_ctx(engine: Engine, s3: Any = None) -> SourceContext:
    """How a test's syncs reach sources: this store, the environment's settings, this S3."""
    return SourceContext(engine, Settings.from_env(), s3)


def sync_all(
    contract: DataProductContract, ctx: SourceContext, embedders: Embedders
) -> list[ShardResult]:
    """Every shard once, through `sync_shard`, as a backfill does."""
    deps = SyncDeps(ctx, embedders)
    return [sync_shard(contract, shard, deps) for shard in range(contract.shards)]


def build_all(
    contracts: dict[str, DataProductContract], ctx: SourceContext, embedder: Embedder
) -> dict[str, int]:
    """Build every product; texts embedded per product."""
    return {
        name: sum(r.index.texts_embedded for r in sync_all(contract, ctx, embedder) if r.index)
        for name, contract in contracts.items()
    }


def edited(products_dir: Path, name: str, old: str, new: str) -> DataProductContract:
    """The product's contract with `old` replaced by `new` in its YAML file."""
    path = products_dir / f"{name}.yaml"
    source = path.read_text()
    assert old in source, old
    path.write_text(source.replace(old, new, 1))
    return load_contract(path)


def shipped_contract(name: str, data: Path) -> str:
    """A shipped product's contract as a plain file's text, its sample data at `data`."""
    path = find_contract(PRODUCTS_DIR, name)
    shutil.copytree(path.parent / "sample_data", data)
    return contract_text(path).replace(": sample_data", f": {data}")


def grant(folder: Path, domain: str, **entries: list[Any]) -> Path:
    """Add to the platform policy of the contracts folder `folder` (written if absent) what the
    platform team grants `domain`: `databases=[{"tables": [...], "database_url_env": ...}]`,
    `buckets=[{"bucket": ..., "prefixes": [...]}]` or `folders=[...]`."""
    path = folder / POLICY_FILE
    policy = yaml.safe_load(path.read_text()) if path.exists() else None
    policy = policy or {"domains": {}}
    granted = policy["domains"].setdefault(domain, {}) or {}
    policy["domains"][domain] = granted
    for kind, values in entries.items():
        granted.setdefault(kind, []).extend(values)
    path.write_text(yaml.safe_dump(policy, sort_keys=False))
    return path


def seed_and_sync(
    products: list[DataProductContract],
    engine: Engine,
    s3: Any,
    access: SourceContext,
    embedder: Embedder,
) -> None:
    """The products' sample data seeded into their sources, then every shard of each synced."""
    seed_sources(products, source_ctx(engine, s3))
    for contract in products:
        sync_all(contract, access, embedder)
