"""A document deleted while its update is being indexed never stays in the index as a ghost.

An index run embeds outside any transaction and writes under per-document locks, re-checking
each document's state; a delete takes the same lock and removes the document's rows from every
index version. Whichever of the two commits last, the index ends without rows of the document.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Connection, Engine, text

from mesh_rag_pipelines.contracts import DataProductContract, load_contracts
from mesh_rag_pipelines.embedding import Embedder
from mesh_rag_pipelines.sources.batch import SourceRead
from mesh_rag_pipelines.sources.documents import DocumentChange, upsert_from_record
from mesh_rag_pipelines.store import index_writer
from mesh_rag_pipelines.store.chunk_set import ChunkSetResult, apply_source_read
from mesh_rag_pipelines.store.health import index_health
from mesh_rag_pipelines.store.index_writer import refresh_index
from mesh_rag_pipelines_tests.helpers import index_rows, shard_of

DELETED, KEPT = "TCK-1001", "TCK-1002"  # both in shard 2
SHARD = 2
WAIT = 60.0


class BlockingEmbedder:
    """The real model, held inside `embed` until the test releases it."""

    def __init__(self, model: Embedder):
        self.model_id, self.dimensions = model.model_id, model.dimensions
        self._model = model
        self.entered, self.released = threading.Event(), threading.Event()

    def embed(self, texts: list[str]) -> np.ndarray:
        self.entered.set()
        if not self.released.wait(WAIT):
            raise TimeoutError("the test never released the embedder")
        return self._model.embed(texts)


class InThread:
    """Runs a call in a thread and hands back its result, or re-raises its exception."""

    def __init__(self, call: Callable[[], Any]):
        self._outcome: dict[str, Any] = {}
        self._thread = threading.Thread(target=self._run, args=(call,), daemon=True)
        self._thread.start()

    def _run(self, call: Callable[[], Any]) -> None:
        try:
            self._outcome["result"] = call()
        except BaseException as exc:  # handed to the test thread
            self._outcome["error"] = exc

    def result(self) -> Any:
        self._thread.join(WAIT)
        assert not self._thread.is_alive(), "the call did not finish"
        if "error" in self._outcome:
            raise self._outcome["error"]
        return self._outcome["result"]


@pytest.fixture
def tickets() -> DataProductContract:
    return next(c for c in load_contracts() if c.name == "support_tickets")


def _ticket(
    contract: DataProductContract, ticket_id: str, version: int, body: str
) -> DocumentChange:
    record = {
        "ticket_id": ticket_id,
        "version": version,
        "updated_at": f"2026-05-0{version}T10:00:00Z",
        "subject": f"Stove will not light ({ticket_id})",
        "body": body,
        "status": "open",
        "priority": "high",
        "product_area": "stoves",
    }
    return upsert_from_record(contract, record)


BODY_V1 = (
    "My Emberline stove stopped lighting after two nights of use at altitude.\n\n"
    "The piezo clicks but there is no spark near the burner head."
)
BODY_V2 = (
    "My Emberline stove stopped lighting after two nights of use at altitude.\n\n"
    "Update: with a match it lights, so the piezo igniter is the part that failed."
)
BODY_V3 = BODY_V2 + "\n\nA replacement igniter arrived and the stove works again."


def _apply(
    engine: Engine, contract: DataProductContract, *changes: DocumentChange
) -> ChunkSetResult:
    return apply_source_read(engine, contract, SHARD, SourceRead(changes=list(changes)))


def _indexed_versions(engine: Engine, product: str) -> dict[str, set[int]]:
    versions: dict[str, set[int]] = {}
    for (doc_id, _), row in index_rows(engine, product).items():
        versions.setdefault(doc_id, set()).add(row[0])
    return versions


def _both_indexed_at_version_one(
    engine: Engine, contract: DataProductContract, minilm: Embedder
) -> None:
    _apply(
        engine,
        contract,
        _ticket(contract, DELETED, 1, BODY_V1),
        _ticket(contract, KEPT, 1, BODY_V1),
    )
    refresh_index(engine, contract, SHARD, minilm)
    assert _indexed_versions(engine, contract.name) == {DELETED: {1}, KEPT: {1}}


def _assert_converged_without(
    engine: Engine, contract: DataProductContract, absent: str, minilm: Embedder
) -> None:
    assert absent not in _indexed_versions(engine, contract.name)
    health = index_health(engine, contract.name)
    assert health is not None
    assert (health.ghost_rows, health.missing_documents, health.consistent) == (0, 0, True)
    again = refresh_index(engine, contract, SHARD, minilm)
    assert (again.documents_indexed, again.chunks_written, again.texts_embedded) == (0, 0, 0)


def test_both_test_documents_share_a_shard() -> None:
    assert shard_of(DELETED) == shard_of(KEPT) == SHARD


def test_a_delete_committed_while_the_update_is_embedded_leaves_no_rows_of_the_document(
    engine: Engine, tickets: DataProductContract, minilm: Embedder
) -> None:
    _both_indexed_at_version_one(engine, tickets, minilm)
    _apply(
        engine, tickets, _ticket(tickets, DELETED, 2, BODY_V2), _ticket(tickets, KEPT, 2, BODY_V2)
    )
    embedder = BlockingEmbedder(minilm)
    run = InThread(lambda: refresh_index(engine, tickets, SHARD, embedder))
    assert embedder.entered.wait(WAIT)

    deleted = _apply(engine, tickets, DocumentChange(DELETED, 2, "delete"))
    assert deleted.documents_deleted == 1
    assert _indexed_versions(engine, tickets.name) == {KEPT: {1}}

    embedder.released.set()
    result = run.result()
    assert (result.documents_indexed, result.documents_skipped_superseded) == (1, 1)
    assert _indexed_versions(engine, tickets.name) == {KEPT: {2}}
    _assert_converged_without(engine, tickets, DELETED, minilm)


def _waiting_advisory_locks(conn: Connection) -> int:
    return conn.execute(
        text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
    ).scalar_one()


def test_a_delete_committed_after_the_index_write_removes_the_rows_just_written(
    engine: Engine,
    tickets: DataProductContract,
    minilm: Embedder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _both_indexed_at_version_one(engine, tickets, minilm)
    _apply(engine, tickets, _ticket(tickets, DELETED, 2, BODY_V2))
    locked, proceed = threading.Event(), threading.Event()
    take_locks = index_writer.lock_documents

    def lock_then_pause(conn: Connection, product: str, doc_ids: list[str]) -> None:
        take_locks(conn, product, doc_ids)
        locked.set()
        proceed.wait(WAIT)

    monkeypatch.setattr(index_writer, "lock_documents", lock_then_pause)
    run = InThread(lambda: refresh_index(engine, tickets, SHARD, minilm))
    assert locked.wait(WAIT)  # the index write holds the document's lock, rows not yet written
    delete = InThread(lambda: _apply(engine, tickets, DocumentChange(DELETED, 2, "delete")))
    with engine.connect() as conn:
        deadline = time.monotonic() + WAIT
        while _waiting_advisory_locks(conn) == 0:
            assert time.monotonic() < deadline, "the delete never waited for the index write"
            time.sleep(0.05)

    proceed.set()
    assert run.result().documents_indexed == 1
    assert delete.result().documents_deleted == 1
    assert _indexed_versions(engine, tickets.name) == {KEPT: {1}}
    _assert_converged_without(engine, tickets, DELETED, minilm)


def test_an_update_committed_while_the_previous_one_is_embedded_is_never_half_indexed(
    engine: Engine, tickets: DataProductContract, minilm: Embedder
) -> None:
    _both_indexed_at_version_one(engine, tickets, minilm)
    _apply(engine, tickets, _ticket(tickets, DELETED, 2, BODY_V2))
    embedder = BlockingEmbedder(minilm)
    run = InThread(lambda: refresh_index(engine, tickets, SHARD, embedder))
    assert embedder.entered.wait(WAIT)
    _apply(engine, tickets, _ticket(tickets, DELETED, 3, BODY_V3))
    embedder.released.set()

    result = run.result()
    assert (result.documents_indexed, result.documents_skipped_superseded) == (0, 1)
    assert _indexed_versions(engine, tickets.name) == {DELETED: {1}, KEPT: {1}}

    caught_up = refresh_index(engine, tickets, SHARD, minilm)
    assert (caught_up.documents_indexed, caught_up.texts_embedded) == (1, 1)
    assert _indexed_versions(engine, tickets.name) == {DELETED: {3}, KEPT: {1}}
    health = index_health(engine, tickets.name)
    assert health is not None and health.consistent
