"""Debezium JSON and AWS DMS CSV change files, end to end: landing zone -> chunk set -> index.

Whatever order the events arrive in, the document version decides: an older version never
overwrites a newer one, and a delete leaves a tombstone that a late older insert cannot undo.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.embedding import Embedder
from mesh_rag_pipelines.sources.base import SourceContext
from mesh_rag_pipelines_tests.landing import (
    contract_variant,
    debezium_event,
    dms_row,
    expected_chunks,
    indexed_chunks,
    land,
    run_product,
    ticket,
)

LEAKING_TENT = ticket(
    "TCK-2001",
    1,
    "Rain fly leaks at the seams",
    "The fly of my Larkspur 2 let water in along the ridge seam during the first storm.\n\n"
    "I pitched it taut and the seams looked taped, so I suspect a factory defect.",
)
LEAKING_TENT_V2 = {
    **LEAKING_TENT,
    "version": 2,
    "updated_at": "2026-04-02T09:30:00Z",
    "body": LEAKING_TENT["body"].replace("first storm", "first storm in the Cascades"),
    "status": "pending",
}
LEAKING_TENT_V3 = {
    **LEAKING_TENT_V2,
    "version": 3,
    "updated_at": "2026-04-03T09:30:00Z",
    "body": LEAKING_TENT_V2["body"] + '\n\nWe shipped a replacement fly, "Larkspur 2, 2026".',
    "status": "solved",
}
BROKEN_ZIPPER = ticket(
    "TCK-2002",
    1,
    "Sleeping bag zipper splits",
    "The main zipper of my Aster 20 bag separates behind the slider after a few nights.",
)
WRONG_SIZE = ticket(
    "TCK-2003",
    1,
    "Boots run small",
    "I ordered the Ridgeline boots in 43 and they fit like a 42. Can I exchange them?",
)
LANTERN = ticket(
    "TCK-2004",
    1,
    "Lantern will not charge",
    "The Glowpine lantern shows no light when plugged in with the supplied cable.",
)


def _texts(contract: DataProductContract, record: dict) -> set[str]:
    return {text for _, text in expected_chunks(contract, record).values()}


@pytest.fixture
def debezium(products_dir: Path) -> DataProductContract:
    return contract_variant(products_dir, "tickets_debezium", "debezium")


@pytest.fixture
def dms(products_dir: Path) -> DataProductContract:
    return contract_variant(products_dir, "tickets_dms", "dms_csv")


def test_debezium_creates_snapshot_reads_updates_and_deletes_reach_the_index(
    debezium: DataProductContract, access: SourceContext, engine: Engine, minilm: Embedder, s3: Any
) -> None:
    land(
        s3,
        debezium,
        "0001.json",
        [
            debezium_event("r", None, LEAKING_TENT),
            debezium_event("c", None, BROKEN_ZIPPER, envelope=True),
            debezium_event("c", None, WRONG_SIZE),
        ],
    )
    first, _ = run_product(debezium, access, minilm)
    assert (first.documents_changed, first.documents_deleted) == (3, 0)

    land(
        s3,
        debezium,
        "0002.json",
        [
            debezium_event("u", LEAKING_TENT, LEAKING_TENT_V2, envelope=True),
            debezium_event("d", BROKEN_ZIPPER, None),
        ],
    )
    second, index = run_product(debezium, access, minilm)
    assert (second.documents_changed, second.documents_deleted) == (1, 1)
    assert indexed_chunks(engine, debezium.name) == expected_chunks(
        debezium, LEAKING_TENT_V2, WRONG_SIZE
    )
    assert index.texts_embedded == len(
        _texts(debezium, LEAKING_TENT_V2) - _texts(debezium, LEAKING_TENT)
    )


def test_debezium_older_events_arriving_late_never_overwrite_a_newer_version(
    debezium: DataProductContract, access: SourceContext, engine: Engine, minilm: Embedder, s3: Any
) -> None:
    land(s3, debezium, "0001.json", [debezium_event("u", LEAKING_TENT_V2, LEAKING_TENT_V3)])
    run_product(debezium, access, minilm)
    land(
        s3,
        debezium,
        "0002.json",
        [
            debezium_event("u", LEAKING_TENT, LEAKING_TENT_V2),
            debezium_event("c", None, LEAKING_TENT),
            debezium_event("d", LEAKING_TENT_V2, None),
        ],
    )

    late, index = run_product(debezium, access, minilm)

    assert (late.documents_changed, late.documents_deleted, late.stale_changes_ignored) == (0, 0, 3)
    assert (index.documents_indexed, index.texts_embedded) == (0, 0)
    assert indexed_chunks(engine, debezium.name) == expected_chunks(debezium, LEAKING_TENT_V3)


def test_debezium_delete_is_a_tombstone_that_a_late_older_create_cannot_resurrect(
    debezium: DataProductContract, access: SourceContext, engine: Engine, minilm: Embedder, s3: Any
) -> None:
    land(s3, debezium, "0001.json", [debezium_event("c", None, LEAKING_TENT_V2)])
    run_product(debezium, access, minilm)
    land(s3, debezium, "0002.json", [debezium_event("d", LEAKING_TENT_V2, None)])
    deleted, _ = run_product(debezium, access, minilm)
    assert deleted.documents_deleted == 1
    land(s3, debezium, "0003.json", [debezium_event("c", None, LEAKING_TENT)])
    land(s3, debezium, "0004.json", [debezium_event("r", None, LEAKING_TENT_V2)])

    late, index = run_product(debezium, access, minilm)

    assert (late.documents_changed, late.stale_changes_ignored) == (0, 2)
    assert index.documents_indexed == 0
    assert indexed_chunks(engine, debezium.name) == {}

    land(s3, debezium, "0005.json", [debezium_event("c", None, LEAKING_TENT_V3)])
    reinserted, _ = run_product(debezium, access, minilm)
    assert reinserted.documents_changed == 1
    assert indexed_chunks(engine, debezium.name) == expected_chunks(debezium, LEAKING_TENT_V3)


def test_debezium_text_with_a_unicode_line_separator_stays_one_event(
    debezium: DataProductContract, access: SourceContext, engine: Engine, minilm: Embedder, s3: Any
) -> None:
    pasted = {**WRONG_SIZE, "body": "Pasted from the order form:\u2028size 43, colour slate."}
    land(s3, debezium, "0001.json", [debezium_event("c", None, pasted)])

    result, _ = run_product(debezium, access, minilm)

    assert (result.documents_changed, result.quarantined) == (1, 0)
    assert indexed_chunks(engine, debezium.name) == expected_chunks(debezium, pasted)


def test_dms_inserts_updates_and_deletes_reach_the_index_with_quoted_multiline_values(
    dms: DataProductContract, access: SourceContext, engine: Engine, minilm: Embedder, s3: Any
) -> None:
    land(
        s3,
        dms,
        "20260401-0930000000.csv",
        [dms_row("I", LEAKING_TENT), dms_row("I", BROKEN_ZIPPER), dms_row("I", WRONG_SIZE)],
    )
    first, _ = run_product(dms, access, minilm)
    assert (first.documents_changed, first.quarantined) == (3, 0)

    land(
        s3,
        dms,
        "20260402-0930000000.csv",
        [dms_row("U", LEAKING_TENT_V3), dms_row("D", BROKEN_ZIPPER), dms_row("I", LANTERN)],
    )
    second, _ = run_product(dms, access, minilm)

    assert (second.documents_changed, second.documents_deleted, second.quarantined) == (2, 1, 0)
    assert indexed_chunks(engine, dms.name) == expected_chunks(
        dms, LEAKING_TENT_V3, WRONG_SIZE, LANTERN
    )


def test_dms_older_rows_arriving_late_never_overwrite_a_newer_version_or_undo_a_delete(
    dms: DataProductContract, access: SourceContext, engine: Engine, minilm: Embedder, s3: Any
) -> None:
    land(s3, dms, "20260403-0000000000.csv", [dms_row("U", LEAKING_TENT_V3)])
    land(s3, dms, "20260403-0000000001.csv", [dms_row("I", WRONG_SIZE)])
    run_product(dms, access, minilm)
    land(
        s3,
        dms,
        "20260401-0000000000.csv",  # a file of older changes, listed before the others
        [dms_row("I", LEAKING_TENT), dms_row("U", LEAKING_TENT_V2), dms_row("D", LEAKING_TENT)],
    )
    older, index = run_product(dms, access, minilm)
    assert (older.documents_changed, older.documents_deleted, older.stale_changes_ignored) == (
        0,
        0,
        3,
    )
    assert index.texts_embedded == 0
    assert indexed_chunks(engine, dms.name) == expected_chunks(dms, LEAKING_TENT_V3, WRONG_SIZE)

    land(s3, dms, "20260404-0000000000.csv", [dms_row("D", WRONG_SIZE)])
    land(s3, dms, "20260404-0000000001.csv", [dms_row("I", WRONG_SIZE)])
    deleted, _ = run_product(dms, access, minilm)

    assert (deleted.documents_deleted, deleted.documents_changed) == (1, 0)
    assert indexed_chunks(engine, dms.name) == expected_chunks(dms, LEAKING_TENT_V3)
