"""A product's shard count is recorded in the store: a contract that changes it is refused with
what to do, and `reshard` moves every stored row to the new count, after which a build embeds
nothing and equals a build from scratch under the new count."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.contracts.model import shard_of
from mesh_rag_pipelines.embedding import Embedder
from mesh_rag_pipelines.pipeline import SyncDeps, sync_shard
from mesh_rag_pipelines.samples import seed_sources
from mesh_rag_pipelines.sources.base import SourceContext
from mesh_rag_pipelines.store.database import engine_for
from mesh_rag_pipelines.store.health import index_health
from mesh_rag_pipelines.store.layout import ShardCountChanged, reshard
from mesh_rag_pipelines.store.schema import SCHEMA
from mesh_rag_pipelines_tests.helpers import (
    assert_same_index,
    edited,
    index_rows,
    source_ctx,
    sync_all,
)


@pytest.mark.parametrize("product", ["hr_policies", "support_tickets"])
def test_a_changed_shard_count_is_refused_until_the_product_is_resharded(
    product: str,
    products_dir: Path,
    contracts: dict[str, DataProductContract],
    access: SourceContext,
    engine: Engine,
    new_database: Callable[[], str],
    minilm: Embedder,
    s3: Any,
) -> None:
    seed_sources([contracts[product]], source_ctx(engine, s3))
    sync_all(contracts[product], access, minilm)
    wider = edited(products_dir, product, "\nacl_groups:", "\nshards: 7\nacl_groups:")
    assert wider.shards == 7

    with pytest.raises(ShardCountChanged) as refused:
        sync_shard(wider, 0, SyncDeps(access, minilm))
    assert str(refused.value).startswith(
        f"product {product}: the contract says shards: 7, but its stored rows are sharded 4 "
        f"ways. Run `mesh-rag reshard --product {product}`"
    )

    old, moved = reshard(engine, wider)
    with engine.connect() as conn:
        stored = conn.execute(
            text(f"SELECT doc_id, shard FROM {SCHEMA}.document_state WHERE product = :p"),
            {"p": product},
        ).all()
    assert (old, moved) == (4, len(stored)) and moved > 0  # tombstones move too
    assert all(shard == shard_of(doc_id, 7) for doc_id, shard in stored)

    results = sync_all(wider, access, minilm)
    assert sum(r.index.texts_embedded for r in results) == 0
    for shard in range(7):
        health = index_health(engine, product, shard)
        assert health is not None and health.consistent, shard
    scratch = engine_for(new_database())
    seed_sources([wider], source_ctx(scratch, s3))
    sync_all(wider, source_ctx(scratch, s3), minilm)
    assert_same_index(index_rows(engine, product), index_rows(scratch, product))
