"""Quarantined records: input that could not become a document, kept with its reason.

A record is quarantined with the file (or table) it came from, its line (or id), the field at
fault and the reason; the copy of the record kept here has the contract's PII fields removed
and its PII types masked, and an object key or id holding PII is kept masked, as the landing
ledger keeps it (see sources.s3_landing), so what `mesh-rag quarantine list` shows is what a
re-drive takes.
Once the cause is fixed (the contract, the code, or the record rewritten at its source), a
re-drive makes the next run of every shard read those records again: the landing-zone ledger
forgets their files, a table's watermark restarts, and the version guard makes every record
already applied a no-op. A record still bad is quarantined again, with its current reason.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, Engine, delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.sources.documents import QuarantineEntry
from mesh_rag_pipelines.sources.s3_landing import ledger_key
from mesh_rag_pipelines.store.schema import LandingObject, QuarantinedRecord, SourceCursor


def record_quarantined(conn: Connection, product: str, entries: Sequence[QuarantineEntry]) -> None:
    """Insert or refresh (field, reason, raw) of each entry; the first time seen is kept."""
    if not entries:
        return
    rows = {
        (q.source_ref, q.record_ref): {
            "product": product,
            "source_ref": q.source_ref,
            "record_ref": q.record_ref,
            "field": q.field,
            "reason": q.reason,
            "raw": q.raw,
            "doc_id": q.doc_id,
        }
        for q in entries
    }
    statement = insert(QuarantinedRecord).values(list(rows.values()))
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=["product", "source_ref", "record_ref"],
            set_={name: statement.excluded[name] for name in ("field", "reason", "raw", "doc_id")},
        )
    )


def quarantined_records(
    engine: Engine, products: Sequence[str] | None = None
) -> list[QuarantinedRecord]:
    query = select(QuarantinedRecord).order_by(
        QuarantinedRecord.product, QuarantinedRecord.quarantined_at, QuarantinedRecord.source_ref
    )
    if products:
        query = query.where(QuarantinedRecord.product.in_(products))
    with Session(engine) as session:
        return list(session.scalars(query))


def redrive(engine: Engine, contract: DataProductContract, source_ref: str | None = None) -> int:
    """Make the next runs read the product's quarantined records again (those of `source_ref`
    only, if given: as listed, or as the source names it, PII and all); returns how many
    records will be read again."""
    product = contract.name
    where = [QuarantinedRecord.product == product]
    if source_ref:
        where.append(QuarantinedRecord.source_ref.in_({source_ref, ledger_key(source_ref)}))
    with engine.begin() as conn:
        refs = set(conn.execute(select(QuarantinedRecord.source_ref).where(*where)).scalars())
        count = conn.execute(delete(QuarantinedRecord).where(*where)).rowcount
        # What the source's kind must read again: a landing zone's objects (quarantine names an
        # object by its ledger key, as the ledger's rows do), a table's rows from the start; a
        # folder is read whole on every run anyway.
        reset = contract.source.redrive(refs)
        if reset.object_keys:
            conn.execute(
                delete(LandingObject).where(
                    LandingObject.product == product,
                    LandingObject.object_key.in_(reset.object_keys),
                )
            )
        if reset.restart_watermarks:
            conn.execute(delete(SourceCursor).where(SourceCursor.product == product))
    return count
