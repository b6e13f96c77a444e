"""Index-version registry and the serving pointer."""

from __future__ import annotations

import hashlib

from sqlalchemy import Connection, Engine, Select, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.store.schema import IndexVersion, ServingPointer, index_table


def index_version_id(contract: DataProductContract) -> str:
    """Stable id of the contract's (chunker, model) pair: same pair, same index version."""
    identity = f"{contract.chunking.identity}|{contract.embedding.model_id}"
    digest = hashlib.sha256(identity.encode()).hexdigest()[:10]
    return f"{contract.name}__{digest}"


def ensure_index_version(engine: Engine, contract: DataProductContract) -> IndexVersion:
    """Register the contract's index version and create its table; idempotent.

    The first version of a product goes live at once (there is nothing to compare it with);
    later ones start as `building` and go live through `swap_live_version`.
    """
    version_id = index_version_id(contract)
    table_name = f"idx_{version_id}"
    with engine.begin() as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": table_name})
        conn.execute(
            insert(IndexVersion)
            .values(
                id=version_id,
                product=contract.name,
                chunker=contract.chunking.identity,
                model_id=contract.embedding.model_id,
                dimensions=contract.embedding.dimensions,
                distance=contract.embedding.distance,
                table_name=table_name,
                status="building",
                metrics={},
            )
            .on_conflict_do_nothing()
        )
        index_table(table_name, contract.embedding.dimensions, contract.embedding.distance).create(
            conn, checkfirst=True
        )
        pointer = select(ServingPointer.product).where(ServingPointer.product == contract.name)
        if conn.execute(pointer).first() is None:
            _point_at(conn, contract.name, version_id)
        return _versions(conn, select(IndexVersion).where(IndexVersion.id == version_id))[0]


def _point_at(conn: Connection, product: str, version_id: str) -> None:
    conn.execute(
        update(IndexVersion)
        .where(IndexVersion.product == product, IndexVersion.status == "live")
        .values(status="retired")
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


def swap_live_version(engine: Engine, product: str, version_id: str) -> None:
    """Point `product` at `version_id` in one transaction; the old version stays for rollback."""
    with engine.begin() as conn:
        target = conn.execute(select(IndexVersion.product).where(IndexVersion.id == version_id))
        if target.scalar_one_or_none() != product:
            raise ValueError(f"product {product}: no index version {version_id!r}")
        _point_at(conn, product, version_id)


def live_versions(engine: Engine, products: list[str] | None = None) -> list[IndexVersion]:
    query = select(IndexVersion).join(
        ServingPointer, ServingPointer.index_version == IndexVersion.id
    )
    if products:
        query = query.where(IndexVersion.product.in_(products))
    with engine.connect() as conn:
        return _versions(conn, query.order_by(IndexVersion.product))


def product_versions(conn: Connection, product: str) -> list[IndexVersion]:
    """Every version of a product, retired ones too: a delete must reach all of them, so that a
    rollback never brings a deleted document back."""
    return _versions(conn, select(IndexVersion).where(IndexVersion.product == product))


def _versions(conn: Connection, query: Select[tuple[IndexVersion]]) -> list[IndexVersion]:
    """Registry rows as detached objects, read inside the caller's transaction."""
    with Session(bind=conn) as session:
        versions = list(session.scalars(query))
        session.expunge_all()
    return versions
