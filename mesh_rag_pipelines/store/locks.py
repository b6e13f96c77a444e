"""Per-document transaction locks shared by every writer of a document."""

from __future__ import annotations

from sqlalchemy import Connection, text


def lock_documents(conn: Connection, product: str, doc_ids: list[str]) -> None:
    """Serialize writers of the same documents until the transaction ends.

    Taken in sorted order so that two batches sharing documents cannot deadlock. Advisory locks
    also cover documents with no state row yet, which SELECT ... FOR UPDATE cannot.
    """
    conn.execute(
        text(
            "SELECT pg_advisory_xact_lock(hashtextextended(:product || '/' || id, 0)) "
            "FROM unnest(CAST(:ids AS text[])) AS id ORDER BY id"
        ),
        {"product": product, "ids": sorted(set(doc_ids))},
    )
