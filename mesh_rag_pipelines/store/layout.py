"""The shard count a product's stored rows were computed with, and re-sharding.

Document state, every index version's rows, the table watermarks and the landing-zone ledger
carry a shard computed from the contract's `shards`. A run under another count would read and
write the wrong rows, so a contract whose `shards` differs from the recorded count is refused
until `reshard` has moved the product's rows, in one transaction, to the new count.
"""

from __future__ import annotations

from sqlalchemy import Connection, Engine, delete, select, text
from sqlalchemy.dialects.postgresql import insert

from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.contracts.model import shard_of
from mesh_rag_pipelines.store.index_versions import lock_product_releases, product_versions
from mesh_rag_pipelines.store.schema import (
    SCHEMA,
    LandingObject,
    ProductLayout,
    SourceCursor,
    qualified,
)


class ShardCountChanged(RuntimeError):
    """The contract's `shards` differs from the count the product's rows were made with."""


def recorded_shards(conn: Connection, product: str) -> int | None:
    return conn.scalar(select(ProductLayout.shards).where(ProductLayout.product == product))


def check_shards(engine: Engine, contract: DataProductContract) -> None:
    """Record the product's shard count on its first run; refuse a run under another count. A
    read, once a count is recorded: only a product's first run writes."""
    with engine.connect() as conn:
        recorded = recorded_shards(conn, contract.name)
    if recorded is None:
        with engine.begin() as conn:
            conn.execute(
                insert(ProductLayout)
                .values(product=contract.name, shards=contract.shards)
                .on_conflict_do_nothing()
            )
            recorded = recorded_shards(conn, contract.name)
    if recorded != contract.shards:
        raise ShardCountChanged(
            f"product {contract.name}: the contract says shards: {contract.shards}, but its "
            f"stored rows are sharded {recorded} ways. Run `mesh-rag reshard --product "
            f"{contract.name}` to move them to {contract.shards} shards (one transaction; "
            f"nothing is re-embedded), or set shards: {recorded} again."
        )


def reshard(engine: Engine, contract: DataProductContract) -> tuple[int | None, int]:
    """Move the product's rows to the contract's shard count; (old count, documents moved).

    State and every index version's rows get their new shard. Table watermarks are dropped (the
    next runs re-read the table; applying a stored version again is a no-op). A landing-zone
    object applied by every old shard counts as applied by every new one; any other is read
    again by the shards that need it, which the version guard makes safe.
    """
    shards = contract.shards
    with engine.begin() as conn:
        lock_product_releases(conn, contract.name)
        old = recorded_shards(conn, contract.name)
        ids = conn.scalars(
            text(f"SELECT doc_id FROM {SCHEMA}.document_state WHERE product = :p"),
            {"p": contract.name},
        ).all()
        conn.execute(text("CREATE TEMPORARY TABLE new_shard (doc_id text PRIMARY KEY, shard int2)"
                          " ON COMMIT DROP"))  # fmt: skip
        if ids:
            conn.execute(
                text("INSERT INTO new_shard SELECT * FROM unnest(CAST(:ids AS text[]), "
                     "CAST(:shards AS int2[]))"),
                {"ids": list(ids), "shards": [shard_of(i, shards) for i in ids]},
            )  # fmt: skip
        tables = ["document_state"] + [v.table_name for v in product_versions(conn, contract.name)]
        for table in tables:
            conn.execute(
                text(f"UPDATE {qualified(table)} AS t SET shard = n.shard FROM new_shard AS n "
                     "WHERE t.doc_id = n.doc_id AND t.product = :p AND t.shard <> n.shard"),
                {"p": contract.name},
            )  # fmt: skip
        conn.execute(delete(SourceCursor).where(SourceCursor.product == contract.name))
        _carry_landing_ledger(conn, contract.name, old, shards)
        conn.execute(
            insert(ProductLayout)
            .values(product=contract.name, shards=shards)
            .on_conflict_do_update(index_elements=["product"], set_={"shards": shards})
        )
    return old, len(ids)


def _carry_landing_ledger(conn: Connection, product: str, old: int | None, shards: int) -> None:
    ledger = LandingObject.__table__
    complete = (
        select(ledger.c.object_key, ledger.c.etag)
        .where(ledger.c.product == product)
        .group_by(ledger.c.object_key, ledger.c.etag)
        .having(text("count(DISTINCT shard) = :old"))
    )
    applied = conn.execute(complete, {"old": old or 0}).all()
    conn.execute(delete(LandingObject).where(LandingObject.product == product))
    rows = [
        {"product": product, "shard": shard, "object_key": key, "etag": etag}
        for key, etag in applied
        for shard in range(shards)
    ]
    if rows:
        conn.execute(insert(LandingObject), rows)
