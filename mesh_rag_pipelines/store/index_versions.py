"""Index-version registry, the serving pointer and the release history.

A version is one (chunker, model, index parameters) triple of one product with its own table.
Every version that is not retired is maintained by every sync; the serving pointer names the
one live version of each product. Registry writes of a product (registering a version,
swapping the pointer, retiring) take one advisory lock per product, so they never interleave.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, Select, delete, exists, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session
from sqlalchemy.schema import CreateIndex

from mesh_rag_pipelines import settings
from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.contracts.model import IndexSpec
from mesh_rag_pipelines.governance.access import protect_index_table
from mesh_rag_pipelines.store.schema import (
    DocumentState,
    IndexedDocument,
    IndexVersion,
    ReleaseEvent,
    ServingPointer,
    hnsw_index,
    index_table,
    index_table_name,
    qualified,
)

# Statuses of versions that every sync keeps equal to document state.
MAINTAINED = ("building", "validated", "live", "failed")


def version_spec(contract: DataProductContract) -> dict[str, Any]:
    """Everything an index version is built with."""
    return {
        "chunking": contract.chunking.model_dump(),
        "embedding": contract.embedding.model_dump(),
        "index": contract.index.model_dump(),
    }


def index_version_id(contract: DataProductContract) -> str:
    """Stable id of the contract's version: the same spec always names the same version.

    Parts at their defaults are left out of the identity, so versions registered before the
    distance and index parameters were part of it keep their ids.
    """
    parts = [contract.chunking.identity, contract.embedding.model_id]
    if contract.embedding.distance != "cosine":
        parts.append(contract.embedding.distance)
    if contract.index != IndexSpec():
        parts.append(json.dumps(contract.index.model_dump(), sort_keys=True))
    digest = hashlib.sha256("|".join(parts).encode()).hexdigest()[:10]
    return f"{contract.name}__{digest}"


def lock_product_releases(conn: Connection, product: str) -> None:
    conn.execute(
        text("SELECT pg_advisory_xact_lock(hashtext('mesh_rag_release/' || :p))"), {"p": product}
    )


def ensure_index_version(
    engine: Engine, contract: DataProductContract, actor: str = "sync"
) -> IndexVersion:
    """Register the contract's version and create its table (without its HNSW index, which is
    built once the version is complete); idempotent.

    The first version of a product goes live at once: there is nothing to compare it with.
    Later ones start as `building` and go live only through a swap. Registering a version
    that was retired brings it back as `building`: the next syncs bring it up to date.
    """
    version_id = index_version_id(contract)
    with engine.begin() as conn:
        existing = _versions(conn, select(IndexVersion).where(IndexVersion.id == version_id))
        if existing and existing[0].status in MAINTAINED and existing[0].dropped_at is None:
            return existing[0]
        lock_product_releases(conn, contract.name)
        live = conn.execute(
            select(ServingPointer.index_version).where(ServingPointer.product == contract.name)
        ).scalar_one_or_none()
        status = "building" if live else "live"
        spec = version_spec(contract)
        table_name = index_table_name(version_id)
        values = {
            "id": version_id,
            "product": contract.name,
            "chunker": contract.chunking.identity,
            "model_id": contract.embedding.model_id,
            "dimensions": contract.embedding.dimensions,
            "distance": contract.embedding.distance,
            "table_name": table_name,
            "status": status,
            "metrics": {},
            "spec": spec,
        }
        revived = {"status": status, "retired_at": None, "dropped_at": None, "spec": spec}
        inserted = conn.execute(
            insert(IndexVersion)
            .values(values)
            .on_conflict_do_update(
                index_elements=[IndexVersion.id],
                set_=revived,
                where=IndexVersion.status.not_in(MAINTAINED) | IndexVersion.dropped_at.isnot(None),
            )
            .returning(IndexVersion.id)
        ).first()
        index_table(table_name, contract.embedding.dimensions, contract.embedding.distance).create(
            conn, checkfirst=True
        )
        protect_index_table(conn, table_name)
        if inserted:
            record_event(conn, contract.name, "registered", version_id, actor=actor)
        if not live:
            set_live(conn, contract.name, version_id)
            record_event(
                conn, contract.name, "swapped", version_id, actor=actor, reason="first version"
            )
        return _versions(conn, select(IndexVersion).where(IndexVersion.id == version_id))[0]


def set_live(conn: Connection, product: str, version_id: str) -> str | None:
    """Point `product` at `version_id`; the version it replaces stays maintained (status
    `validated`) as the rollback target. Returns that version's id. Caller holds the lock."""
    previous = conn.execute(
        select(ServingPointer.index_version).where(ServingPointer.product == product)
    ).scalar_one_or_none()
    if previous and previous != version_id:
        conn.execute(
            update(IndexVersion).where(IndexVersion.id == previous).values(status="validated")
        )
    conn.execute(update(IndexVersion).where(IndexVersion.id == version_id).values(status="live"))
    conn.execute(
        insert(ServingPointer)
        .values(product=product, index_version=version_id)
        .on_conflict_do_update(
            index_elements=[ServingPointer.product],
            set_={"index_version": version_id, "swapped_at": text("now()")},
        )
    )
    return previous


def record_event(
    conn: Connection,
    product: str,
    action: str,
    version: str,
    *,
    previous: str | None = None,
    actor: str,
    reason: str | None = None,
    forced: bool = False,
    metrics: dict[str, Any] | None = None,
) -> None:
    conn.execute(
        insert(ReleaseEvent).values(
            product=product,
            action=action,
            version=version,
            previous_version=previous,
            actor=actor,
            reason=reason,
            forced=forced,
            metrics=metrics or {},
        )
    )


def release_history(engine: Engine, product: str) -> list[ReleaseEvent]:
    query = select(ReleaseEvent).where(ReleaseEvent.product == product).order_by(ReleaseEvent.id)
    with Session(engine) as session:
        events = list(session.scalars(query))
        session.expunge_all()
    return events


def live_versions(engine: Engine, products: list[str] | None = None) -> list[IndexVersion]:
    query = select(IndexVersion).join(
        ServingPointer, ServingPointer.index_version == IndexVersion.id
    )
    if products:
        query = query.where(IndexVersion.product.in_(products))
    with engine.connect() as conn:
        return _versions(conn, query.order_by(IndexVersion.product))


def maintained_versions(engine: Engine, product: str) -> list[IndexVersion]:
    """The versions every sync keeps equal to document state: all but the retired."""
    query = (
        select(IndexVersion)
        .where(IndexVersion.product == product, IndexVersion.status.in_(MAINTAINED))
        .order_by(IndexVersion.created_at, IndexVersion.id)
    )
    with engine.connect() as conn:
        return _versions(conn, query)


def product_versions(conn: Connection, product: str) -> list[IndexVersion]:
    """Every version of a product whose table exists, retired ones too: a delete must reach all
    of them, so that no table keeps a deleted document."""
    query = select(IndexVersion).where(
        IndexVersion.product == product, IndexVersion.dropped_at.is_(None)
    )
    return _versions(conn, query.order_by(IndexVersion.created_at, IndexVersion.id))


def remove_documents(
    conn: Connection, versions: Sequence[IndexVersion], doc_ids: Sequence[str]
) -> int:
    """The documents' rows out of each version's table, and their indexed records, in the
    caller's transaction (which holds their locks): how a delete, a re-index and an erasure
    all take a document out of an index. Returns the rows removed."""
    removed = 0
    for version in versions:
        table = index_table(version.table_name, version.dimensions, version.distance)
        removed += conn.execute(delete(table).where(table.c.doc_id.in_(doc_ids))).rowcount
    conn.execute(
        delete(IndexedDocument).where(
            IndexedDocument.index_version.in_([v.id for v in versions]),
            IndexedDocument.doc_id.in_(doc_ids),
        )
    )
    return removed


def get_version(engine: Engine, version_id: str) -> IndexVersion | None:
    with engine.connect() as conn:
        found = _versions(conn, select(IndexVersion).where(IndexVersion.id == version_id))
    return found[0] if found else None


def is_complete(engine: Engine, version: IndexVersion) -> bool:
    """Every live document of the product is indexed in `version` at its current version."""
    indexed = exists().where(
        IndexedDocument.index_version == version.id,
        IndexedDocument.doc_id == DocumentState.doc_id,
        IndexedDocument.doc_version == DocumentState.version,
    )
    missing = select(DocumentState.doc_id).where(
        DocumentState.product == version.product, DocumentState.deleted.is_(False), ~indexed
    )
    with engine.connect() as conn:
        return conn.execute(missing.limit(1)).first() is None


def build_index_if_complete(engine: Engine, version: IndexVersion) -> bool:
    """Build the version's HNSW index once every live document is in its table.

    Filling a table first and indexing it once costs a fraction of inserting each vector into
    the graph; the index exists before the version can be validated or queried fast. Returns
    whether it was built now.
    """
    if version.index_built_at is not None or not is_complete(engine, version):
        return False
    return build_index(engine, version)


def build_index(engine: Engine, version: IndexVersion) -> bool:
    """Build the version's HNSW index now if it has none; whether it was built now."""
    spec = version.index_spec
    with engine.begin() as conn:
        conn.execute(
            text("SELECT pg_advisory_xact_lock(hashtext('mesh_rag_hnsw/' || :v))"),
            {"v": version.id},
        )
        built = conn.execute(
            select(IndexVersion.index_built_at).where(IndexVersion.id == version.id)
        ).scalar_one()
        if built is not None:
            return False
        conn.execute(
            text("SELECT set_config('maintenance_work_mem', :m, true)"),
            {"m": settings.HNSW_BUILD_MEMORY},
        )
        index = hnsw_index(
            version.table_name, version.dimensions, version.distance, spec.m, spec.ef_construction
        )
        conn.execute(CreateIndex(index, if_not_exists=True))
        # Fresh statistics: retrieval plans filtered queries from the share of each ACL group.
        conn.execute(text(f"ANALYZE {qualified(version.table_name)}"))
        conn.execute(
            update(IndexVersion)
            .where(IndexVersion.id == version.id)
            .values(index_built_at=datetime.now(UTC))
        )
    return True


def _versions(conn: Connection, query: Select[tuple[IndexVersion]]) -> list[IndexVersion]:
    """Registry rows as detached objects, read inside the caller's transaction."""
    with Session(bind=conn) as session:
        versions = list(session.scalars(query))
        session.expunge_all()
    return versions
