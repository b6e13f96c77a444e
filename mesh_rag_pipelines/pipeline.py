"""One product, one shard: source -> chunk set -> index version. No Dagster here.

`refresh_chunk_set` and `refresh_index` are the two steps the Dagster assets call; running them
for every shard is a full build, and running them again is a no-op.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.governance.policy import ensure_granted
from mesh_rag_pipelines.sources.batch import SourceRead
from mesh_rag_pipelines.sources.files import read_files
from mesh_rag_pipelines.sources.landing_cursor import (
    LandingCursor,
    advance,
    shards_touched,
    unseen,
)
from mesh_rag_pipelines.sources.observe import ShardVersion, observe_source
from mesh_rag_pipelines.sources.postgres_table import read_table
from mesh_rag_pipelines.sources.s3_landing import (
    LandedObject,
    list_landed_objects,
    read_landing_zone,
)
from mesh_rag_pipelines.store.chunk_set import (
    ChunkSetResult,
    applied_objects,
    apply_source_read,
    known_documents,
    read_cursors,
    sync_acl,
)
from mesh_rag_pipelines.store.database import source_engine
from mesh_rag_pipelines.store.health import index_health
from mesh_rag_pipelines.store.index_writer import Embedders, IndexResult, refresh_index
from mesh_rag_pipelines.store.layout import check_shards


@dataclass
class SourceAccess:
    """How to reach sources: the store's engine (also the default table source) and S3."""

    engine: Engine
    s3: Any = None

    def table_engine(self, contract: DataProductContract) -> Engine:
        env = contract.source.database_url_env
        if not env:
            return self.engine
        url = os.environ.get(env)
        if not url:
            raise RuntimeError(f"product {contract.name}: source.database_url_env {env} is not set")
        return source_engine(url)


def read_source(contract: DataProductContract, shard: int, access: SourceAccess) -> SourceRead:
    """The shard's changes, read only if the platform policy, as it stands now, grants the
    contract's source to its domain (SourceNotGranted otherwise, with the message `mesh-rag
    check` gives): whatever path the contract took here, and however long ago it was loaded."""
    ensure_granted(contract)
    known = known_documents(access.engine, contract.name, shard)
    kind = contract.source.kind
    if kind == "files":
        return read_files(contract, shard, known)
    if kind == "postgres_table":
        cursors = read_cursors(access.engine, contract.name, shard)
        return read_table(contract, access.table_engine(contract), shard, known, cursors)
    if access.s3 is None:
        raise RuntimeError(f"product {contract.name}: an S3 client is needed for {kind}")
    applied = applied_objects(access.engine, contract.name, shard)
    return read_landing_zone(contract, access.s3, shard, applied)


def refresh_chunk_set(
    contract: DataProductContract, shard: int, access: SourceAccess
) -> ChunkSetResult:
    """Apply the shard's source changes, then any change of the contract's ACL groups."""
    check_shards(access.engine, contract)
    read = read_source(contract, shard, access)
    result = apply_source_read(access.engine, contract, shard, read)
    result.acl_updated = sync_acl(access.engine, contract, shard)
    return result


def shards_with_pending_changes(contract: DataProductContract, access: SourceAccess) -> list[int]:
    """Shards whose source holds changes not yet applied; it reads and never writes, so a
    schedule can ask on every tick and launch runs only where there is work."""
    return [
        shard for shard in range(contract.shards) if read_source(contract, shard, access).changes
    ]


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
    contract: DataProductContract, access: SourceAccess
) -> list[tuple[int, datetime | None]]:
    """Each change the source holds that the store has not applied: its shard and when it was
    made (reads the source, writes nothing)."""
    return [
        (shard, change.source_updated_at)
        for shard in range(contract.shards)
        for change in read_source(contract, shard, access).changes
    ]


def source_lag(
    contract: DataProductContract,
    access: SourceAccess,
    waiting: Sequence[tuple[int, datetime | None]] | None = None,
) -> SourceLag:
    """The product's lag; `waiting` (shard, changed at) replaces reading the source, for a
    landing zone whose waiting objects its sensor tracks."""
    if waiting is None:
        waiting = waiting_changes(contract, access)
    shards = {shard for shard, _ in waiting}
    unindexed = 0
    oldest = min((at for _, at in waiting if at), default=None)
    for shard in range(contract.shards):
        health = index_health(access.engine, contract.name, shard)
        if health is not None and health.consistent:
            continue
        # Never built (no live version) or not matching: something is not served yet.
        unindexed += max(health.missing_documents, 1) if health else 1
        shards.add(shard)
        if health and health.oldest_unindexed_change:
            oldest = min(filter(None, [oldest, health.oldest_unindexed_change]))
    return SourceLag(len(waiting), unindexed, oldest, tuple(sorted(shards)))


def pending_landed_objects(
    contract: DataProductContract,
    access: SourceAccess,
    cursor: LandingCursor,
    *,
    page_size: int = 1000,
    limit: int | None = None,
) -> tuple[dict[int, list[LandedObject]], LandingCursor]:
    """Landing objects new since the cursor, by the shards that have not applied them yet, and
    the cursor that records them.

    Objects every shard has already applied (a run read them before this call saw them) are
    recorded without being read; at most `limit` others are read, oldest first, and the rest are
    left for the next call.
    """
    bucket, prefix = contract.source.bucket or "", contract.source.prefix or ""
    listing = list(list_landed_objects(access.s3, bucket, prefix, page_size))
    ledgers = [
        applied_objects(access.engine, contract.name, shard) for shard in range(contract.shards)
    ]
    fresh = unseen(listing, cursor)
    settled = [o for o in fresh if all((o.key, o.etag) in ledger for ledger in ledgers)]
    settled_set = set(settled)
    to_read = [o for o in fresh if o not in settled_set][:limit]
    pending = {
        shard: [o for o in objects if (o.key, o.etag) not in ledgers[shard]]
        for shard, objects in shards_touched(contract, access.s3, to_read).items()
    }
    by_shard = {shard: objects for shard, objects in pending.items() if objects}
    return by_shard, advance(cursor, listing, settled + to_read)


def build_product(
    contract: DataProductContract, access: SourceAccess, embedders: Embedders
) -> list[tuple[ChunkSetResult, IndexResult]]:
    """Every shard of one product, in order; what a backfill does with one run per shard."""
    return [
        (
            refresh_chunk_set(contract, shard, access),
            refresh_index(access.engine, contract, shard, embedders),
        )
        for shard in range(contract.shards)
    ]


def current_source_versions(
    contract: DataProductContract, access: SourceAccess
) -> dict[int, ShardVersion]:
    """Each shard's data version now: what a polled source holds, or the landing objects a
    landing zone's shard has applied."""
    if contract.source.kind != "s3_landing":
        return observe_source(
            contract, access.table_engine(contract) if contract.source.table else None
        )
    versions = {}
    for shard in range(contract.shards):
        applied = sorted(
            f"{key}\t{etag}" for key, etag in applied_objects(access.engine, contract.name, shard)
        )
        digest = hashlib.sha256("\n".join(applied).encode()).hexdigest()[:16]
        versions[shard] = ShardVersion(digest, len(applied), None)
    return versions
