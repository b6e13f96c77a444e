"""Incremental runs over the three source kinds, step by step, against builds from scratch.

Each step changes the source, runs every shard of the product once, and checks:

- the chunk-set counts (documents changed, deleted, stale changes ignored) exactly;
- the texts embedded exactly: 0 for a run with nothing new, and for an edit exactly the chunk
  texts of the new content that were never embedded before (for an edit of one paragraph,
  the texts of the new chunking that the old one did not have), computed with the chunker
  alone;
- that the index equals a build from scratch of the same source into a second, empty database
  (embedding cache included): same ids, texts, versions and vectors.

A polled source (a table, a folder) is read as its current state, which is the truth: a row
deleted and re-inserted with its revision counter reset comes back. A change file is a stream,
where the version decides: an older event never overwrites a newer one. One departure from the
build from scratch is deliberate: a file has no version of its own, the store numbers its
revisions, so a build from scratch numbers every file 1; file versions are checked against the
store's counter instead.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, make_url, text

from mesh_rag_pipelines.chunking import chunk_document
from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.embedding import Embedder
from mesh_rag_pipelines.samples import seed_sources
from mesh_rag_pipelines.sources.base import SourceContext
from mesh_rag_pipelines.sources.files import file_record
from mesh_rag_pipelines.store.chunk_set import ChunkSetResult
from mesh_rag_pipelines.store.database import engine_for, ensure_schema
from mesh_rag_pipelines.store.index_writer import IndexResult
from mesh_rag_pipelines.store.schema import SCHEMA
from mesh_rag_pipelines_tests.helpers import (
    IndexSnapshot,
    assert_same_index,
    grant,
    index_rows,
    source_ctx,
)
from mesh_rag_pipelines_tests.landing import land, project_event, run_product, ticket

BuildFromScratch = Callable[[DataProductContract], IndexSnapshot]
Counts = tuple[int, int, int, int]  # documents changed, deleted, stale ignored; texts embedded


@pytest.fixture
def scratch_engine(server_url: str) -> Iterator[Engine]:
    """A second, empty database on the same server, for builds from scratch."""
    name = f"scratch_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    yield engine_for(url)
    engine_for(url).dispose()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def build_from_scratch(scratch_engine: Engine, s3: Any, minilm: Embedder) -> BuildFromScratch:
    """Forget everything in the second database, cache included, and build the product there."""

    def build(contract: DataProductContract) -> IndexSnapshot:
        with scratch_engine.begin() as conn:
            conn.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        ensure_schema(scratch_engine)
        run_product(contract, source_ctx(scratch_engine, s3), minilm)
        return index_rows(scratch_engine, contract.name)

    return build


class CheckedRuns:
    """Runs one product after each change of its source and checks the run (see module doc)."""

    def __init__(
        self,
        contract: DataProductContract,
        access: SourceContext,
        embedder: Embedder,
        build_from_scratch: Callable[[], IndexSnapshot],
        versions_from_source: bool = True,
    ):
        self.contract, self.access, self.embedder = contract, access, embedder
        self._build_from_scratch = build_from_scratch
        self._versions_from_source = versions_from_source
        self.embedded: set[str] = set()
        self.index: IndexSnapshot = {}

    def new_texts(self, title: str | None, content: str) -> int:
        """Chunk texts of this content that no earlier run has embedded."""
        return len(_texts(self.contract, title, content) - self.embedded)

    def run(self, step: str, expected: Counts) -> tuple[ChunkSetResult, IndexResult]:
        chunk_set, index = run_product(self.contract, self.access, self.embedder)
        counts = (
            chunk_set.documents_changed,
            chunk_set.documents_deleted,
            chunk_set.stale_changes_ignored,
            index.texts_embedded,
        )
        assert counts == expected, step
        self.index = index_rows(self.access.engine, self.contract.name)
        self.embedded |= {row[1] for row in self.index.values()}
        scratch = self._build_from_scratch()
        if self._versions_from_source:
            assert_same_index(self.index, scratch)
        else:
            assert_same_index(_without_versions(self.index), _without_versions(scratch))
        return chunk_set, index

    def versions(self) -> dict[str, int]:
        return {doc_id: row[0] for (doc_id, _), row in self.index.items()}


def _texts(contract: DataProductContract, title: str | None, content: str) -> set[str]:
    """The chunk texts of a document, from the chunker alone."""
    return {chunk.text for chunk in chunk_document(contract.chunking, title, content)}


def _without_versions(snapshot: IndexSnapshot) -> IndexSnapshot:
    return {key: (0, *row[1:]) for key, row in snapshot.items()}


def _edit_one_paragraph(content: str, old: str, new: str) -> str:
    assert content.count(old) == 1
    return content.replace(old, new)


# --- files -------------------------------------------------------------------------------------

KEPT_POLICIES = {"travel.md", "remote-work.md", "paid-time-off.md"}  # shards 1, 0 and 3
HYBRID_MEETINGS = """---
title: Hybrid Meetings Guideline
effective_date: 2026-06-01
policy_owner: People Operations
---

# Hybrid Meetings Guideline

## Purpose

Meetings with people in the room and people on video work only when everyone can hear, see
and speak. This guideline sets the defaults for every meeting room booking at Northwind sites.

## Before the Meeting

Book a room with a ceiling microphone for any meeting with remote participants. Share the
agenda in the invitation at least one business day ahead, with documents attached rather than
linked from personal drives.

## During the Meeting

Everyone in the room joins the video call from their laptop with audio muted, so that remote
participants see faces rather than a table. The host watches the chat and raises hands from
remote participants in the order they come in.
"""


def _policy(root: Path, name: str) -> tuple[str | None, str]:
    record = file_record(root, root / name)
    return record["title"], record["body"]


def test_files_sequence_embeds_only_new_texts_and_matches_builds_from_scratch(
    contracts: dict[str, DataProductContract],
    access: SourceContext,
    minilm: Embedder,
    build_from_scratch: BuildFromScratch,
) -> None:
    policies = contracts["hr_policies"]
    root = policies.resolve_path(policies.source.path or ".")
    for path in root.glob("*.md"):
        if path.name not in KEPT_POLICIES:
            path.unlink()
    sequence = CheckedRuns(
        policies, access, minilm, lambda: build_from_scratch(policies), versions_from_source=False
    )
    initial = set().union(*(_texts(policies, *_policy(root, name)) for name in KEPT_POLICIES))
    sequence.run("initial build", (3, 0, 0, len(initial)))

    (root / "hybrid-meetings.md").write_text(HYBRID_MEETINGS)
    inserted = sequence.new_texts(*_policy(root, "hybrid-meetings.md"))
    assert inserted == 3
    sequence.run("insert", (1, 0, 0, inserted))

    travel = root / "travel.md"
    original = travel.read_text()
    old = _texts(policies, *_policy(root, "travel.md"))
    travel.write_text(
        _edit_one_paragraph(
            original,
            "Consider whether a video call would work as well.",
            "Consider first whether a video call or a hybrid meeting would work as well.",
        )
    )
    new = _texts(policies, *_policy(root, "travel.md"))
    assert len(new - old) == sequence.new_texts(*_policy(root, "travel.md")) == 1
    sequence.run("update one paragraph", (1, 0, 0, 1))

    (root / "hybrid-meetings.md").unlink()
    sequence.run("delete", (0, 1, 0, 0))
    assert "hybrid-meetings.md" not in sequence.versions()

    (root / "hybrid-meetings.md").write_text(HYBRID_MEETINGS)
    sequence.run("re-insert after delete", (1, 0, 0, 0))

    os.utime(travel, (1_900_000_000, 1_900_000_000))
    unchanged, _ = sequence.run("file touched, content unchanged", (0, 0, 0, 0))
    assert unchanged.documents_unchanged == 4

    travel.write_text(original)
    sequence.run("revert to the original text", (1, 0, 0, 0))

    sequence.run("nothing changed", (0, 0, 0, 0))
    assert sequence.versions() == {
        "travel.md": 3,
        "remote-work.md": 1,
        "paid-time-off.md": 1,
        "hybrid-meetings.md": 2,
    }


# --- postgres table ----------------------------------------------------------------------------

KEPT_SKUS = ["NW-TNT-0001", "NW-TNT-0004", "NW-TNT-0019"]  # shards 2, 0 and 3
SOURCE_URL_ENV = "MESH_RAG_TEST_CATALOG_SOURCE_URL"
STOVE_PARAGRAPHS = [
    "The Emberline Duo is a two-burner canister stove for basecamps and car camping. Each "
    "burner puts out 2,600 watts and simmers down to a flicker, so a pot of rice does not "
    "scorch while the second burner boils water for coffee. The burners sit 28 cm apart, far "
    "enough for two 24 cm pans, and the windscreen folds around three sides of the stove to "
    "keep the flame steady on exposed pitches.",
    "Both burners run from one 450 g canister through a regulated valve that holds output "
    "steady as the canister cools, down to minus ten degrees. The piezo igniter is recessed "
    "under the valve knob, away from spills, and a spare flint igniter is stored in the lid. "
    "A full canister lasts about ninety minutes with both burners on high, or two long "
    "weekends of breakfasts and dinners for four people.",
    "Clean the burner heads with the included brush after every trip and store the stove "
    "dry, with the canister removed. The cast aluminium grates lift out and go in the "
    "dishwasher. Replacement regulators, hoses and grates are sold separately and covered by "
    "our five year warranty against defects in materials and workmanship.",
]


def _description(paragraphs: list[str]) -> str:
    return "\n\n".join(paragraphs)


def test_postgres_table_sequence_embeds_only_new_texts_and_matches_builds_from_scratch(
    contracts: dict[str, DataProductContract],
    access: SourceContext,
    engine: Engine,
    database_url: str,
    minilm: Embedder,
    build_from_scratch: BuildFromScratch,
    monkeypatch: pytest.MonkeyPatch,
    s3: Any,
) -> None:
    catalog = contracts["catalog_products"]
    seed_sources([catalog], source_ctx(engine, s3))
    table = catalog.source.table
    with engine.begin() as conn:
        conn.execute(text(f"DELETE FROM {table} WHERE sku <> ALL(:kept)"), {"kept": KEPT_SKUS})
    # The build from scratch reads the same source table from its own, empty store.
    monkeypatch.setenv(SOURCE_URL_ENV, database_url)
    assert catalog._origin is not None
    grant(
        catalog._origin.parent,
        "commerce",
        databases=[{"database_url_env": SOURCE_URL_ENV, "tables": [table]}],
    )
    from_the_same_table = catalog.model_copy(
        update={"source": catalog.source.model_copy(update={"database_url_env": SOURCE_URL_ENV})}
    )
    sequence = CheckedRuns(catalog, access, minilm, lambda: build_from_scratch(from_the_same_table))

    def write_row(revision: int, paragraphs: list[str], hour: int) -> dict[str, Any]:
        row = {
            "sku": "NW-STV-0100",
            "revision": revision,
            "updated_at": f"2027-01-01T{hour:02d}:00:00+00:00",
            "name": "Emberline Duo Camp Stove",
            "description": _description(paragraphs),
            "category": "stoves",
            "brand": "Northwind Trail Co.",
            "price_cents": 14900,
            "audience": "unisex",
            "supplier_email": "r.ames@suppliers.example.com",
        }
        columns = ", ".join(row)
        updates = ", ".join(f"{name} = EXCLUDED.{name}" for name in row if name != "sku")
        with engine.begin() as conn:
            conn.execute(
                text(
                    f"INSERT INTO {table} ({columns}) VALUES "
                    f"({', '.join(':' + name for name in row)}) "
                    f"ON CONFLICT (sku) DO UPDATE SET {updates}"
                ),
                row,
            )
        return row

    with engine.connect() as conn:
        rows = conn.execute(text(f"SELECT name, description FROM {table}")).all()
    initial = set().union(*(_texts(catalog, r.name, r.description) for r in rows))
    sequence.run("initial build", (3, 0, 0, len(initial)))

    inserted = write_row(1, STOVE_PARAGRAPHS, hour=1)
    expected = sequence.new_texts(inserted["name"], inserted["description"])
    assert expected == 2
    sequence.run("insert", (1, 0, 0, expected))

    edited = [*STOVE_PARAGRAPHS[:2], STOVE_PARAGRAPHS[2].replace("five year", "ten year")]
    updated = write_row(2, edited, hour=2)
    old = _texts(catalog, inserted["name"], inserted["description"])
    new = _texts(catalog, updated["name"], updated["description"])
    assert len(new - old) == sequence.new_texts(updated["name"], updated["description"]) == 1
    sequence.run("update one paragraph", (1, 0, 0, 1))

    with engine.begin() as conn:
        conn.execute(text(f"DELETE FROM {table} WHERE sku = 'NW-STV-0100'"))
    sequence.run("delete", (0, 1, 0, 0))
    assert "NW-STV-0100" not in sequence.versions()

    write_row(1, edited, hour=3)
    sequence.run("re-inserted with its revision counter reset, older than the delete", (1, 0, 0, 0))
    assert sequence.versions()["NW-STV-0100"] == 1

    with engine.begin() as conn:
        conn.execute(
            text(f"UPDATE {table} SET updated_at = :at WHERE sku = 'NW-STV-0100'"),
            {"at": "2027-01-01T04:00:00+00:00"},
        )
    duplicate, _ = sequence.run("row re-stamped at the same revision", (0, 0, 0, 0))
    assert duplicate.documents_unchanged == 1

    sequence.run("nothing changed", (0, 0, 0, 0))


# --- S3 landing zone ---------------------------------------------------------------------------

TENT_TICKET_PARAGRAPHS = [
    "I bought a Larkspur 2 tent in March and used it on a five night trip in the North Cascades. "
    "On the third night a storm came through with strong gusts from the west, and by morning "
    "there was a puddle under the foot of the inner tent. I pitched the fly taut, staked out "
    "every guy line, and checked that the vestibules were closed before we went to sleep, "
    "so I do not think this was a pitching mistake on my part.",
    "When I dried the tent at home I found that the seam tape along the ridge had lifted for "
    "about twenty centimetres near the pole hub. The tape is peeling at both edges and the "
    "stitching underneath is visible. There are no holes in the fabric itself and the floor "
    "looks fine. I have photos of the seam and of the puddle if that helps your team decide "
    "what happened and whether it is a manufacturing defect.",
    "Could you tell me whether this is covered by the warranty, and if so whether you would "
    "repair the fly or replace it? I have another trip planned in four weeks, so a quick "
    "answer would help me a lot. I still have the receipt from the Portland store.",
]


def test_s3_landing_sequence_embeds_only_new_texts_and_matches_builds_from_scratch(
    contracts: dict[str, DataProductContract],
    access: SourceContext,
    engine: Engine,
    minilm: Embedder,
    build_from_scratch: BuildFromScratch,
    s3: Any,
) -> None:
    tickets = contracts["support_tickets"]
    sequence = CheckedRuns(tickets, access, minilm, lambda: build_from_scratch(tickets))
    first = [
        ticket("TCK-4001", 1, "Stove will not light", "The igniter clicks but no flame."),
        ticket("TCK-4002", 1, "Wrong boot size", "I need a 44 instead of a 43."),
        ticket("TCK-4003", 3, "Lantern charging", "The lantern does not charge over USB-C."),
    ]
    land(s3, tickets, "0001.jsonl", [project_event("upsert", t) for t in first])
    sequence.run("initial build", (3, 0, 0, 3))

    v1 = ticket("TCK-4100", 1, "Seam tape lifting on the fly", "\n\n".join(TENT_TICKET_PARAGRAPHS))
    land(s3, tickets, "0002.jsonl", [project_event("upsert", v1)])
    inserted = sequence.new_texts(v1["subject"], v1["body"])
    assert inserted == 2
    sequence.run("insert", (1, 0, 0, inserted))

    edited = TENT_TICKET_PARAGRAPHS[2].replace("four weeks", "three weeks")
    v2 = {**v1, "version": 2, "body": "\n\n".join([*TENT_TICKET_PARAGRAPHS[:2], edited])}
    update_file = land(s3, tickets, "0003.jsonl", [project_event("upsert", v2)])
    old = _texts(tickets, v1["subject"], v1["body"])
    new = _texts(tickets, v2["subject"], v2["body"])
    assert len(new - old) == sequence.new_texts(v2["subject"], v2["body"]) == 1
    sequence.run("update one paragraph", (1, 0, 0, 1))

    land(s3, tickets, "0004.jsonl", [project_event("delete", v2)])
    sequence.run("delete", (0, 1, 0, 0))
    assert "TCK-4100" not in sequence.versions()

    v3 = {**v2, "version": 3}
    land(s3, tickets, "0005.jsonl", [project_event("upsert", v3)])
    sequence.run("re-insert after delete", (1, 0, 0, 0))

    land(s3, tickets, "0006.jsonl", [project_event("upsert", v1)])
    sequence.run("out-of-order older event", (0, 0, 1, 0))
    assert sequence.versions()["TCK-4100"] == 3

    land(s3, tickets, "0007.jsonl", [project_event("upsert", v3), project_event("upsert", v3)])
    sequence.run("duplicate event", (0, 0, 2, 0))

    body = s3.get_object(Bucket=tickets.source.bucket, Key=update_file)["Body"].read()
    s3.put_object(Bucket=tickets.source.bucket, Key=update_file, Body=body)
    sequence.run("the same landing file uploaded again", (0, 0, 0, 0))
    redelivered = f"{tickets.source.prefix}0008.jsonl"
    s3.put_object(Bucket=tickets.source.bucket, Key=redelivered, Body=body)
    sequence.run("the same landing file delivered under a new key", (0, 0, 1, 0))

    with engine.begin() as conn:
        conn.execute(
            text(f"DELETE FROM {SCHEMA}.landing_object WHERE product = :p"), {"p": tickets.name}
        )
    sequence.run("every landing file replayed", (0, 0, 11, 0))
    assert sequence.versions() == {"TCK-4001": 1, "TCK-4002": 1, "TCK-4003": 3, "TCK-4100": 3}
