"""Access control lives in the database: the serving role reads index tables only through
row-level security keyed on the caller's groups, through the API, the CLI and raw SQL alike.
ACL edits in a contract reach indexed rows on the next run without re-embedding."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import ProgrammingError

from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.embedding import Embedder
from mesh_rag_pipelines.governance.access import OPERATOR_ROLE, SERVING_ROLE, InvalidCallerGroup
from mesh_rag_pipelines.retrieval import Caller, search
from mesh_rag_pipelines.services.embedded_postgres import local_login
from mesh_rag_pipelines.sources.base import SourceContext
from mesh_rag_pipelines.store.index_versions import live_versions
from mesh_rag_pipelines.store.schema import SCHEMA
from mesh_rag_pipelines_tests.helpers import edited, seed_and_sync, sync_all

MESH_RAG = str(Path(sys.executable).parent / "mesh-rag")
QUERY = "my tent arrived damaged and I want a refund"


@pytest.fixture
def built(
    contracts: dict[str, DataProductContract],
    access: SourceContext,
    engine: Engine,
    minilm: Embedder,
    s3: Any,
) -> dict[str, DataProductContract]:
    chosen = {name: contracts[name] for name in ("hr_policies", "support_tickets")}
    seed_and_sync(list(chosen.values()), engine, s3, access, minilm)
    return chosen


def _serving_login(database_url: str) -> Engine:
    """The serving role, logged in with its own (generated) password."""
    return create_engine(local_login(database_url, SERVING_ROLE))


def _rows(engine: Engine, product: str) -> int:
    table = live_versions(engine, [product])[0].table_name
    with engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {SCHEMA}.{table}")).scalar_one())


def _visible_rows(serving: Engine, table: str, groups: list[str] | None) -> int:
    with serving.begin() as conn:
        if groups is not None:
            conn.execute(
                text(f"SELECT {SCHEMA}.set_caller_groups(CAST(:g AS text[]))"), {"g": groups}
            )
        return int(conn.execute(text(f"SELECT count(*) FROM {SCHEMA}.{table}")).scalar_one())


def test_raw_sql_as_the_serving_role_sees_exactly_the_callers_rows(
    built: dict[str, DataProductContract], engine: Engine, database_url: str
) -> None:
    serving = _serving_login(database_url)
    tickets = live_versions(engine, ["support_tickets"])[0].table_name
    policies = live_versions(engine, ["hr_policies"])[0].table_name
    all_tickets, all_policies = _rows(engine, "support_tickets"), _rows(engine, "hr_policies")
    assert all_tickets > 100 and all_policies > 50

    assert _visible_rows(serving, tickets, None) == 0  # no caller, no rows
    assert _visible_rows(serving, tickets, ["contractors"]) == 0
    assert _visible_rows(serving, tickets, ["support_agents"]) == all_tickets
    assert _visible_rows(serving, policies, ["support_agents"]) == 0
    assert _visible_rows(serving, policies, ["hr", "support_agents"]) == all_policies
    with serving.begin() as conn:  # only the store's own function sets the groups
        conn.execute(text("SELECT set_config('mesh_rag.groups', 'hr,support_agents', true)"))
        assert conn.execute(text(f"SELECT count(*) FROM {SCHEMA}.{policies}")).scalar() == 0
    with pytest.raises(ProgrammingError, match="permission denied"), serving.connect() as conn:
        conn.execute(text(f"SELECT count(*) FROM {SCHEMA}.document_state"))
    serving.dispose()


def test_the_api_returns_nothing_outside_the_callers_groups(
    built: dict[str, DataProductContract], engine: Engine, minilm: Embedder
) -> None:
    contracts = list(built.values())
    embedders = {minilm.model_id: minilm}

    def seen(caller: Caller) -> set[str]:
        hits = search(engine, contracts, QUERY, caller, k=50, embedders=embedders)
        return {h.product for h in hits}

    assert seen(Caller.of(["contractors"])) == set()
    assert seen(Caller()) == set()
    assert seen(Caller.of(["support_agents"])) == {"support_tickets"}
    assert seen(Caller.of(["employees", "support_agents"])) == {"hr_policies", "support_tickets"}
    # A group holding a comma is refused whole, never read as two groups.
    with pytest.raises(InvalidCallerGroup, match="invalid caller group 'x,employees'"):
        seen(Caller.of(["support_agents", "x,employees"]))


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MESH_RAG, *args], env=env, capture_output=True, text=True, timeout=600, check=False
    )


def test_the_cli_requires_a_caller_and_filters_by_its_groups(
    built: dict[str, DataProductContract],
    products_dir: Path,
    database_url: str,
    s3_endpoint: str,
) -> None:
    env = {
        **os.environ,
        "MESH_RAG_DATABASE_URL": database_url,
        "MESH_RAG_S3_ENDPOINT_URL": s3_endpoint,
        "MESH_RAG_CONTRACTS_DIR": str(products_dir),
    }
    env.pop("MESH_RAG_OPERATOR_DATABASE_URL", None)
    anonymous = _cli(env, "query", QUERY)
    assert anonymous.returncode != 0
    assert "a caller identity is required: --group G" in anonymous.stderr

    outsider = _cli(env, "query", QUERY, "--group", "contractors", "--json")
    assert outsider.returncode == 0, outsider.stderr
    assert '"hits": []' in outsider.stdout
    assert "is shared with the caller's groups ['contractors']" in outsider.stdout

    agent = _cli(env, "query", QUERY, "--group", "support_agents", "--json", "-k", "30")
    assert agent.returncode == 0, agent.stderr
    assert '"product": "support_tickets"' in agent.stdout
    assert '"product": "hr_policies"' not in agent.stdout

    operator = _cli(env, "query", QUERY, "--operator")
    assert operator.returncode != 0
    assert "needs MESH_RAG_OPERATOR_DATABASE_URL" in operator.stderr
    env["MESH_RAG_OPERATOR_DATABASE_URL"] = local_login(database_url, SERVING_ROLE)
    operator = _cli(env, "query", QUERY, "--operator")
    assert operator.returncode != 0
    assert "which is subject to row-level security" in operator.stderr
    env["MESH_RAG_OPERATOR_DATABASE_URL"] = local_login(database_url, OPERATOR_ROLE)
    operator = _cli(env, "query", QUERY, "--operator", "--json", "-k", "100")
    assert operator.returncode == 0, operator.stderr
    assert '"product": "hr_policies"' in operator.stdout


def test_an_acl_edit_reaches_indexed_rows_on_the_next_run_without_reembedding(
    built: dict[str, DataProductContract],
    products_dir: Path,
    access: SourceContext,
    engine: Engine,
    minilm: Embedder,
) -> None:
    contractors = Caller.of(["contractors"])
    widened = edited(
        products_dir,
        "hr_policies",
        "acl_groups: [employees, hr]",
        "acl_groups: [employees, hr, contractors]",
    )
    results = sync_all(widened, access, minilm)

    assert sum(r.index.texts_embedded for r in results) == 0
    assert sum(r.chunks.acl_updated for r in results) == 12
    hits = search(engine, [widened], "parental leave", contractors, k=50, unit="documents")
    assert len(hits) == 12

    narrowed = edited(
        products_dir,
        "hr_policies",
        "acl_groups: [employees, hr, contractors]",
        "acl_groups: [employees, hr]",
    )
    results = sync_all(narrowed, access, minilm)
    assert sum(r.index.texts_embedded for r in results) == 0
    assert search(engine, [narrowed], "parental leave", contractors, k=50) == []
    assert (
        len(search(engine, [narrowed], "parental leave", Caller.of(["hr"]), k=50, unit="documents"))
        == 12
    )


def test_a_record_may_narrow_who_reads_it(
    products_dir: Path, access: SourceContext, engine: Engine, minilm: Embedder, s3: Any
) -> None:
    from mesh_rag_pipelines_tests.landing import contract_variant, land, project_event, ticket

    tickets = contract_variant(products_dir, "tickets_acl", "jsonl")
    path = products_dir / "tickets_acl.yaml"
    path.write_text(
        path.read_text()
        .replace("acl_groups: [support_agents]", "acl_groups: [support_agents, billing]")
        .replace("title_field: subject", "title_field: subject\n  acl_field: visible_to")
    )
    from mesh_rag_pipelines.contracts import load_contract

    tickets = load_contract(path)
    refund = ticket("TCK-9001", 1, "Refund", "Refund for a damaged tent.", visible_to=["billing"])
    open_to_all = ticket("TCK-9002", 1, "Stakes", "Tent stakes bent on rock.")
    outsider = ticket("TCK-9003", 1, "Lamp", "Lamp broke.", visible_to=["marketing"])
    land(s3, tickets, "0001", [project_event("upsert", r) for r in (refund, open_to_all, outsider)])
    sync_all(tickets, access, minilm)

    def documents(groups: list[str]) -> set[str]:
        hits = search(engine, [tickets], "tent", Caller.of(groups), k=10, unit="documents")
        return {h.doc_id for h in hits}

    assert documents(["billing"]) == {"TCK-9001", "TCK-9002"}
    assert documents(["support_agents"]) == {"TCK-9002"}
    assert documents(["marketing"]) == set()  # a group outside the product's never reads
