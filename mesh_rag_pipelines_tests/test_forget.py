"""Right to be forgotten: a document leaves every index version, chunk set, cache entry (of
every version it had), state and quarantine; replaying its change events never brings it back;
an audit row remains, naming the database role that erased it apart from who claims to."""

from __future__ import annotations

import json
import os
import pwd
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from mesh_rag_pipelines.chunking import chunk_document
from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.embedding import Embedder, embedder_for
from mesh_rag_pipelines.governance.erasure import forget
from mesh_rag_pipelines.orchestration.erasure import forget_job
from mesh_rag_pipelines.orchestration.resources import IndexStore
from mesh_rag_pipelines.sources.base import SourceContext
from mesh_rag_pipelines.store.index_versions import product_versions
from mesh_rag_pipelines.store.schema import SCHEMA
from mesh_rag_pipelines_tests.conftest import MeshRag
from mesh_rag_pipelines_tests.helpers import edited, sync_all
from mesh_rag_pipelines_tests.landing import land, project_event, ticket

GONE = ticket("TCK-6001", 3, "Account closure", "Please close my account and delete my data.")
STAYS = ticket("TCK-6002", 1, "Tent pole", "A pole section of my tent cracked.")


def _count(engine: Engine, query: str, **params: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(query), params).scalar_one())


def _session_user(engine: Engine) -> str:
    with engine.connect() as conn:
        return str(conn.execute(text("SELECT session_user")).scalar_one())


def _hashes(contract: DataProductContract, record: dict[str, Any]) -> set[str]:
    chunks = chunk_document(contract.chunking, record["subject"], record["body"])
    return {chunk.text_hash for chunk in chunks}


def _cached(engine: Engine, hashes: set[str]) -> int:
    return _count(
        engine,
        f"SELECT count(*) FROM {SCHEMA}.embedding_cache WHERE text_hash = ANY(:h)",
        h=sorted(hashes),
    )


def test_every_version_of_a_document_leaves_the_cache_and_other_documents_stay(
    contracts: dict[str, DataProductContract],
    access: SourceContext,
    engine: Engine,
    minilm: Embedder,
    s3: Any,
) -> None:
    tickets = contracts["support_tickets"]
    versions = [
        {**GONE, "version": 1, "body": "My order never shipped; please cancel it."},
        {**GONE, "version": 2, "body": "Cancel my order and refund the card I paid with."},
        {**GONE, "version": 3, "body": "Close my account and delete everything about me."},
    ]
    first = [project_event("upsert", versions[0]), project_event("upsert", STAYS)]
    land(s3, tickets, "0001", first)
    sync_all(tickets, access, minilm)
    for n, version in enumerate(versions[1:], start=2):  # updated twice, each one embedded
        land(s3, tickets, f"000{n}", [project_event("upsert", version)])
        sync_all(tickets, access, minilm)
    gone = set().union(*(_hashes(tickets, v) for v in versions))
    stays = _hashes(tickets, STAYS)
    assert len(gone) >= 3 and not gone & stays
    assert _cached(engine, gone) == len(gone) and _cached(engine, stays) == len(stays)

    erasure = forget(engine, tickets, "TCK-6001", claimed_actor="dpo")

    assert _cached(engine, gone) == 0
    assert _cached(engine, stays) == len(stays)
    assert erasure.cache_entries_removed == len(gone)
    assert _count(engine, f"SELECT count(*) FROM {SCHEMA}.embedding_cache") == len(stays)


def test_the_audit_names_the_database_role_apart_from_the_claimed_os_user(
    contracts: dict[str, DataProductContract], engine: Engine, mesh_rag: MeshRag
) -> None:
    mesh_rag.env.update(LOGNAME="ceo@northwind", USER="ceo@northwind")

    done = mesh_rag.run("forget", "--product", "support_tickets", "--id", "TCK-6001")

    with engine.connect() as conn:
        audit = conn.execute(text(f"SELECT * FROM {SCHEMA}.erasure_audit")).mappings().one()
    account = pwd.getpwuid(os.getuid()).pw_name
    role = _session_user(engine)
    assert audit["actor_role"] == role
    assert audit["actor_claimed"] == (
        "os user ceo@northwind (claimed by the environment), "
        f"process account {account} (uid {os.getuid()}), via mesh-rag forget"
    )
    assert audit["actor"] == f"{role} (claimed: {audit['actor_claimed']})"
    assert f"audited as database role {role}" in done.stdout


def test_a_launchpad_erasure_records_the_run_and_its_launcher_only_as_dagster_knows_it(
    contracts: dict[str, DataProductContract], engine: Engine, database_url: str
) -> None:
    tickets = contracts["support_tickets"]
    job = forget_job(tickets)
    config = {"ops": {f"{tickets.name}_forget": {"config": {"doc_ids": ["TCK-6001"]}}}}
    resources = {"index_store": IndexStore(database_url=database_url)}

    oss = job.execute_in_process(run_config=config, resources=resources)
    plus = job.execute_in_process(
        run_config=config, resources=resources, tags={"dagster/user": "dpo@northwind.example"}
    )

    with engine.connect() as conn:
        audits = conn.execute(
            text(f"SELECT actor_role, actor_claimed FROM {SCHEMA}.erasure_audit ORDER BY id")
        ).all()
    role = _session_user(engine)
    assert [tuple(a) for a in audits] == [
        (
            role,
            f"dagster run {oss.run_id}, launcher unknown (no dagster/user tag: open-source "
            "Dagster does not record who launched a run)",
        ),
        (
            role,
            f"dagster run {plus.run_id}, launched by dpo@northwind.example (run tag dagster/user)",
        ),
    ]


def test_an_id_that_holds_pii_is_erased_without_being_kept(
    contracts: dict[str, DataProductContract], engine: Engine
) -> None:
    tickets = contracts["support_tickets"]
    with engine.begin() as conn:  # as a store written before ids were checked could hold it
        conn.execute(
            text(
                f"INSERT INTO {SCHEMA}.document_state (product, doc_id, shard, version, "
                "content, metadata, acl_groups, document_type, deleted) VALUES "
                "('support_tickets', 'jane@example.com', 0, 1, 'x', '{}', '{}', 'ticket', false)"
            )
        )

    erasure = forget(engine, tickets, "jane@example.com", claimed_actor="dpo")

    assert erasure.doc_id == "<EMAIL_ADDRESS>"
    for table in ("document_state", "erasure_audit"):
        assert (
            _count(
                engine,
                f"SELECT count(*) FROM {SCHEMA}.{table} t WHERE t::text LIKE '%jane@example.com%'",
            )
            == 0
        )
    assert _count(engine, f"SELECT count(*) FROM {SCHEMA}.erasure_audit") == 1


def test_a_forgotten_document_is_gone_everywhere_and_stays_gone(
    contracts: dict[str, DataProductContract],
    products_dir: Path,
    access: SourceContext,
    engine: Engine,
    minilm: Embedder,
    s3: Any,
) -> None:
    tickets = contracts["support_tickets"]
    history = [project_event("upsert", {**GONE, "version": v}) for v in (1, 2, 3)]
    land(s3, tickets, "0001", [*history, project_event("upsert", STAYS)])
    land(  # under a key that holds PII: quarantine names it masked
        s3,
        tickets,
        "export-jane.doe@example.com.jsonl",
        ['{"op": "upsert", "data": {"ticket_id": "TCK-6001", "version": "x"}}'],
    )
    sync_all(tickets, access, minilm)
    revised = edited(
        products_dir, "support_tickets", "distance: cosine", 'distance: cosine\n  revision: "2"'
    )
    sync_all(revised, access, embedder_for)  # a second index version holds it too
    with engine.connect() as conn:
        versions = product_versions(conn, tickets.name)
    assert len(versions) == 2
    texts = [c.text_hash for c in chunk_document(tickets.chunking, GONE["subject"], GONE["body"])]
    assert (
        _count(
            engine,
            f"SELECT count(*) FROM {SCHEMA}.quarantine WHERE doc_id = 'TCK-6001' "
            "AND source_ref LIKE '%/support_tickets/<EMAIL_ADDRESS>.jsonl'",
        )
        == 1
    )

    erasure = forget(
        engine, tickets, "TCK-6001", claimed_actor="dpo", reason="erasure request 2026-113"
    )

    assert erasure.versions == [v.id for v in versions]
    assert erasure.index_rows_removed == 2 * len(texts)
    for version in versions:
        assert (
            _count(
                engine,
                f"SELECT count(*) FROM {SCHEMA}.{version.table_name} WHERE doc_id = 'TCK-6001'",
            )
            == 0
        )
        assert (
            _count(
                engine,
                f"SELECT count(*) FROM {SCHEMA}.{version.table_name} WHERE doc_id = 'TCK-6002'",
            )
            > 0
        )
    for table in ("chunk", "indexed_document", "quarantine"):
        assert (
            _count(engine, f"SELECT count(*) FROM {SCHEMA}.{table} WHERE doc_id = 'TCK-6001'") == 0
        )
    assert (
        _count(
            engine,
            f"SELECT count(*) FROM {SCHEMA}.embedding_cache WHERE text_hash = ANY(:h)",
            h=texts,
        )
        == 0
    )
    with engine.connect() as conn:
        state = conn.execute(
            text(
                "SELECT title, content, metadata, deleted, forgotten_at "
                f"FROM {SCHEMA}.document_state WHERE doc_id = 'TCK-6001'"
            )
        ).one()
        audit = conn.execute(text(f"SELECT * FROM {SCHEMA}.erasure_audit")).mappings().one()
    assert (state.title, state.content, state.metadata, state.deleted) == (None, None, {}, True)
    assert state.forgotten_at is not None
    role = _session_user(engine)
    assert (audit["doc_id"], audit["actor_role"], audit["actor_claimed"], audit["reason"]) == (
        "TCK-6001",
        role,
        "dpo",
        "erasure request 2026-113",
    )
    assert audit["actor"] == f"{role} (claimed: dpo)"
    assert _count(engine, f"SELECT count(*) FROM {SCHEMA}.quarantine") == 0
    assert (
        audit["versions"] == erasure.versions
        and audit["index_rows_removed"] == erasure.index_rows_removed
    )
    assert GONE["body"] not in json.dumps(dict(audit), default=str)

    # The same events again, under a new key, and a newer version: nothing comes back.
    land(s3, tickets, "0003", [*history, project_event("upsert", {**GONE, "version": 9})])
    replay = sync_all(revised, access, embedder_for)
    assert sum(r.chunks.documents_changed for r in replay) == 0
    for version in versions:
        assert (
            _count(
                engine,
                f"SELECT count(*) FROM {SCHEMA}.{version.table_name} WHERE doc_id = 'TCK-6001'",
            )
            == 0
        )
