"""One product, one shard: source -> chunk set -> every maintained index version. No Dagster here.

`sync_shard` is the one way a shard is synced: the Dagster assets, `sync_now`, the command line
(through the assets) and the tests all call it. Running it for every shard is a full build;
running it again is a no-op:

- the shard's source changes are read (only if the platform policy grants the source) and
  applied to document state and the chunk set, per document, only when newer than what is
  stored; a change of the contract's ACL groups reaches stored documents and index rows;
- unless the shard's share of records breaking the contract's quality rules passes
  `quality.max_violation_rate` (the index then waits for the records to be fixed), every
  maintained index version (live, candidate, rollback target) is reconciled with document
  state: documents indexed at another version are re-written, their new texts embedded once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.embedding.local_model import model_load_seconds
from mesh_rag_pipelines.governance.policy import ensure_granted
from mesh_rag_pipelines.sources.base import ShardState, ShardVersion, SourceContext
from mesh_rag_pipelines.sources.batch import SourceRead
from mesh_rag_pipelines.store.chunk_set import (
    ChunkSetResult,
    applied_objects,
    apply_source_read,
    known_documents,
    read_cursors,
    sync_acl,
)
from mesh_rag_pipelines.store.health import index_health
from mesh_rag_pipelines.store.index_writer import (
    Embedders,
    IndexResult,
    reembed_documents,
    refresh_index,
)
from mesh_rag_pipelines.store.layout import check_shards
from mesh_rag_pipelines.store.product_status import record_status


@dataclass
class SyncDeps:
    """What a sync needs: how to reach the source and the store, and the embedding models
    (one embedder for every version, or the embedder of a version's spec)."""

    ctx: SourceContext
    embedders: Embedders


@dataclass
class ShardResult:
    """What one shard's sync did. `index` is None when the quality gate held the index back."""

    shard: int
    chunks: ChunkSetResult
    index: IndexResult | None
    model_load_seconds: float = 0.0
    schema_drift: list[str] = field(default_factory=list)

    @property
    def violation_rate(self) -> float:
        read = self.chunks.records_read
        return self.chunks.quality_violations / read if read else 0.0


def shard_state(contract: DataProductContract, shard: int, ctx: SourceContext) -> ShardState:
    """What the store holds for a shard that its source's next read starts from."""
    return ShardState(
        known=known_documents(ctx.engine, contract.name, shard),
        cursors=read_cursors(ctx.engine, contract.name, shard),
        applied=applied_objects(ctx.engine, contract.name, shard),
    )


def read_source(contract: DataProductContract, shard: int, ctx: SourceContext) -> SourceRead:
    """The shard's changes, read only if the platform policy, as it stands now, grants the
    contract's source to its domain (SourceNotGranted otherwise, with the message `mesh-rag
    check` gives): whatever path the contract took here, and however long ago it was loaded."""
    ensure_granted(contract, ctx.settings)
    return contract.source.read(contract, shard, shard_state(contract, shard, ctx), ctx)


def sync_shard(
    contract: DataProductContract,
    shard: int,
    deps: SyncDeps,
    *,
    reembed: Sequence[str] = (),
) -> ShardResult:
    """Apply the shard's source changes, then reconcile every maintained index version; the
    documents in `reembed` are embedded anew, ignoring cached vectors (a provider fixed a
    model, say)."""
    engine = deps.ctx.engine
    check_shards(engine, contract)
    read = read_source(contract, shard, deps.ctx)
    chunks = apply_source_read(engine, contract, shard, read)
    chunks.acl_updated = sync_acl(engine, contract, shard)
    drift = [
        f"unexpected field {name!r} in {n} records" for name, n in read.unexpected_fields.items()
    ]
    result = ShardResult(shard, chunks, None, schema_drift=drift + list(read.schema_changes))
    if result.violation_rate > contract.quality.max_violation_rate:
        return result
    if reembed:
        reembed_documents(engine, contract, [d for d in reembed if contract.shard_of(d) == shard])
    loading_before = model_load_seconds()
    result.index = refresh_index(engine, contract, shard, deps.embedders)
    result.model_load_seconds = model_load_seconds() - loading_before
    return result


@dataclass(frozen=True)
class SourceLag:
    """What queries do not see yet, counted from the source's side: changes waiting in the
    source, and documents read in but not (or not rightly) in the live index."""

    waiting_changes: int
    unindexed_documents: int
    oldest_change: datetime | None
    shards: tuple[int, ...]

    @property
    def in_sync(self) -> bool:
        return self.waiting_changes == 0 and self.unindexed_documents == 0


def waiting_changes(
    contract: DataProductContract, ctx: SourceContext
) -> list[tuple[int, datetime | None]]:
    """Each change the source holds that the store has not applied: its shard and when it was
    made (reads the source, writes nothing)."""
    return [
        (shard, change.source_updated_at)
        for shard in range(contract.shards)
        for change in read_source(contract, shard, ctx).changes
    ]


def shards_with_pending_changes(contract: DataProductContract, ctx: SourceContext) -> list[int]:
    return sorted({shard for shard, _ in waiting_changes(contract, ctx)})


def source_lag(
    contract: DataProductContract,
    ctx: SourceContext,
    waiting: Sequence[tuple[int, datetime | None]] | None = None,
) -> SourceLag:
    """The product's lag; `waiting` (shard, changed at) replaces reading the source, for a
    sensor that tracks what waits itself."""
    if waiting is None:
        waiting = waiting_changes(contract, ctx)
    shards = {shard for shard, _ in waiting}
    unindexed = 0
    oldest = min((at for _, at in waiting if at), default=None)
    for shard in range(contract.shards):
        health = index_health(ctx.engine, contract.name, shard)
        if health is not None and health.consistent:
            continue
        # Never built (no live version) or not matching: something is not served yet.
        unindexed += max(health.missing_documents, 1) if health else 1
        shards.add(shard)
        if health and health.oldest_unindexed_change:
            oldest = min(filter(None, [oldest, health.oldest_unindexed_change]))
    return SourceLag(len(waiting), unindexed, oldest, tuple(sorted(shards)))


def judge_freshness(
    contract: DataProductContract,
    ctx: SourceContext,
    waiting: Sequence[tuple[int, datetime | None]] | None = None,
) -> SourceLag:
    """The product's lag (see `source_lag`), recorded as its last judged status, which the
    retrieval service's catalog reads."""
    lag = source_lag(contract, ctx, waiting)
    record_status(
        ctx.engine,
        contract.name,
        in_sync=lag.in_sync,
        waiting_changes=lag.waiting_changes,
        unindexed_documents=lag.unindexed_documents,
        oldest_change=lag.oldest_change,
    )
    return lag


def current_source_versions(
    contract: DataProductContract, ctx: SourceContext
) -> dict[int, ShardVersion]:
    """Each shard's data version now, as its source kind observes it (a landing zone's from the
    objects each shard has applied)."""
    states = {
        shard: ShardState(applied=applied_objects(ctx.engine, contract.name, shard))
        for shard in range(contract.shards)
    }
    return contract.source.observe(contract, ctx, states)
