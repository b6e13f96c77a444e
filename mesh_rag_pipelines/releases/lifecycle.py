"""Swap, rollback and retirement of index versions: each one transaction on the registry.

A swap points the product at a validated version in one transaction: queries see the old or
the new version, never a mix and never nothing. The version it replaces stays maintained as
the rollback target; a rollback swaps back. Retirement stops maintaining a version and drops its
table after the contract's retention, never the live version or the rollback target. Every
action is recorded in the release history with who, when, why and (for swaps past a failed
gate) that it was forced.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, Engine, delete, select, update
from sqlalchemy.orm import Session

from mesh_rag_pipelines.store.index_versions import (
    MAINTAINED,
    lock_product_releases,
    record_event,
    set_live,
)
from mesh_rag_pipelines.store.schema import (
    IndexedDocument,
    IndexVersion,
    ReleaseEvent,
    ServingPointer,
    index_table,
)


class ReleaseError(ValueError):
    """A release action the registry refuses; the message says why and what to do."""


@dataclass(frozen=True)
class SwapResult:
    product: str
    live: str
    previous: str | None
    seconds: float


def _version(conn: Connection, product: str, version_id: str) -> IndexVersion:
    with Session(bind=conn) as session:
        version = session.get(IndexVersion, version_id)
        if version is not None:
            session.expunge(version)
    if version is None or version.product != product:
        raise ReleaseError(f"product {product}: no index version {version_id!r}")
    return version


def _live(conn: Connection, product: str) -> str | None:
    return conn.execute(
        select(ServingPointer.index_version).where(ServingPointer.product == product)
    ).scalar_one_or_none()


def rollback_target(conn: Connection, product: str) -> str | None:
    """The version the live one replaced, if it is still maintained."""
    live = _live(conn, product)
    previous = conn.execute(
        select(ReleaseEvent.previous_version)
        .where(
            ReleaseEvent.product == product,
            ReleaseEvent.version == live,
            ReleaseEvent.action.in_(("swapped", "rolled_back")),
        )
        .order_by(ReleaseEvent.id.desc())
        .limit(1)
    ).scalar_one_or_none()
    if previous is None:
        return None
    status = conn.execute(
        select(IndexVersion.status).where(IndexVersion.id == previous)
    ).scalar_one_or_none()
    return previous if status in MAINTAINED else None


def swap(
    engine: Engine,
    product: str,
    version_id: str,
    *,
    actor: str,
    force: bool = False,
    reason: str | None = None,
) -> SwapResult:
    """Make `version_id` live. It must have passed validation, unless `force` with a reason,
    which the history records."""
    if force and not reason:
        raise ReleaseError("a forced swap needs a reason (--reason TEXT); it is recorded")
    started = datetime.now(UTC)
    with engine.begin() as conn:
        lock_product_releases(conn, product)
        version = _version(conn, product, version_id)
        if version.status == "live":
            raise ReleaseError(f"product {product}: {version_id} is already live")
        if version.status not in MAINTAINED:
            raise ReleaseError(
                f"product {product}: {version_id} is {version.status}; only a maintained "
                "version can serve"
            )
        if version.status != "validated" and not force:
            raise ReleaseError(
                f"product {product}: {version_id} has not passed validation (status "
                f"{version.status}); run `mesh-rag release validate`, or swap with "
                "--force --reason TEXT"
            )
        if version.index_built_at is None and not force:
            raise ReleaseError(
                f"product {product}: {version_id} has no HNSW index yet (not every document is "
                "in it); finish its backfill first"
            )
        previous = set_live(conn, product, version_id)
        record_event(
            conn,
            product,
            "swapped",
            version_id,
            previous=previous,
            actor=actor,
            reason=reason,
            forced=force and version.status != "validated",
        )
    seconds = (datetime.now(UTC) - started).total_seconds()
    return SwapResult(product, version_id, previous, seconds)


def rollback(engine: Engine, product: str, *, actor: str, reason: str | None = None) -> SwapResult:
    """Serve the version the live one replaced again."""
    started = datetime.now(UTC)
    with engine.begin() as conn:
        lock_product_releases(conn, product)
        target = rollback_target(conn, product)
        if target is None:
            raise ReleaseError(f"product {product}: there is no previous version to roll back to")
        previous = set_live(conn, product, target)
        record_event(
            conn, product, "rolled_back", target, previous=previous, actor=actor, reason=reason
        )
    return SwapResult(product, target, previous, (datetime.now(UTC) - started).total_seconds())


def retire(
    engine: Engine, product: str, version_id: str, *, actor: str, reason: str | None = None
) -> None:
    """Stop maintaining a version; its table is dropped after the retention (drop_retired)."""
    with engine.begin() as conn:
        lock_product_releases(conn, product)
        version = _version(conn, product, version_id)
        if version.status == "live":
            raise ReleaseError(f"product {product}: {version_id} is live; swap first")
        if version_id == rollback_target(conn, product):
            raise ReleaseError(
                f"product {product}: {version_id} is the rollback target of the live version; "
                "it is kept until another version replaces it"
            )
        if version.status == "retired":
            return
        conn.execute(
            update(IndexVersion)
            .where(IndexVersion.id == version_id)
            .values(status="retired", retired_at=datetime.now(UTC))
        )
        record_event(conn, product, "retired", version_id, actor=actor, reason=reason)


def drop_retired(engine: Engine, product: str, retention: timedelta, *, actor: str) -> list[str]:
    """Drop the tables of versions retired longer than `retention` ago; returns their ids."""
    dropped = []
    with engine.begin() as conn:
        lock_product_releases(conn, product)
        cutoff = datetime.now(UTC) - retention
        with Session(bind=conn) as session:
            expired = list(
                session.scalars(
                    select(IndexVersion).where(
                        IndexVersion.product == product,
                        IndexVersion.status == "retired",
                        IndexVersion.dropped_at.is_(None),
                        IndexVersion.retired_at <= cutoff,
                    )
                )
            )
            session.expunge_all()
        for version in expired:
            table = index_table(version.table_name, version.dimensions, version.distance)
            table.drop(conn, checkfirst=True)
            conn.execute(delete(IndexedDocument).where(IndexedDocument.index_version == version.id))
            conn.execute(
                update(IndexVersion)
                .where(IndexVersion.id == version.id)
                .values(dropped_at=datetime.now(UTC))
            )
            record_event(conn, product, "dropped", version.id, actor=actor)
            dropped.append(version.id)
    return dropped
