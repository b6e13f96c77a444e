"""Callers' feedback into releases: a negative judgment naming the right documents becomes a
candidate evaluation query, once, only on the judging caller's own logged response; a person
accepts or rejects it with `mesh-rag feedback`, all or none; the release gate scores the
accepted ones beside the golden queries, and nothing unreviewed enters it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from sqlalchemy import Engine, create_engine, select, text
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.pool import NullPool

from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.embedding import Embedder
from mesh_rag_pipelines.governance.access import SERVING_ROLE
from mesh_rag_pipelines.orchestration.feedback import feedback_job_name
from mesh_rag_pipelines.orchestration.product import product_definitions
from mesh_rag_pipelines.orchestration.resources import IndexStore
from mesh_rag_pipelines.services.embedded_postgres import local_login
from mesh_rag_pipelines.sources.base import SourceContext
from mesh_rag_pipelines.store.feedback import evaluation_set, list_candidates, record_feedback
from mesh_rag_pipelines.store.index_versions import get_version, index_version_id
from mesh_rag_pipelines.store.query_log import LoggedRequest, record_request
from mesh_rag_pipelines.store.schema import SCHEMA, EvaluationCandidate
from mesh_rag_pipelines_tests.conftest import MeshRag
from mesh_rag_pipelines_tests.helpers import edited, sync_all

PRODUCT = "hr_policies"
LEAVE = "How many weeks of paid leave does a primary caregiver get after a birth?"
HOTEL = "What may I spend per night on a hotel in New York?"
LAPTOP = "When do I return my laptop after leaving?"


@pytest.fixture
def serving(engine: Engine, database_url: str) -> Iterator[Engine]:
    """The store as the retrieval service reaches it: the serving role, its own password."""
    try:
        url = local_login(database_url, SERVING_ROLE)
    except (OSError, KeyError) as exc:  # pragma: no cover - an external test server
        pytest.skip(f"needs the embedded PostgreSQL's generated passwords: {exc}")
    serving = create_engine(url, poolclass=NullPool)
    yield serving
    serving.dispose()


def _asked(serving: Engine, subject: str, query: str, products: list[str]) -> uuid.UUID:
    """A response the service logged for `subject`, written as the service writes it (as the
    serving role, which may not read the log)."""
    response_id = uuid.uuid4()
    entry = LoggedRequest(
        response_id=response_id, subject=subject, identity_kind="api_key", route="search",
        query_masked=query, products=products, index_versions=[], k=5, unit="documents",
        embed_ms=4.0, search_ms=2.0, total_ms=7.0, result_ids=[], abstention=None, status=200,
    )  # fmt: skip
    record_request(serving, entry)
    return response_id


def _judged(
    serving: Engine, response_id: uuid.UUID, subject: str, helpful: bool, right: list[str]
) -> None:
    record_feedback(serving, response_id, subject, helpful, right, comment=None)


def _statuses(engine: Engine) -> list[tuple[int, str, str]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(EvaluationCandidate.id, EvaluationCandidate.query, EvaluationCandidate.status)
            .order_by(EvaluationCandidate.id)
        )  # fmt: skip
        return [(r.id, r.query, r.status) for r in rows]


def _judgments(serving: Engine) -> None:
    """Three usable negative judgments on hr_policies, and every kind that proposes nothing."""
    _judged(serving, _asked(serving, "alice", LEAVE, [PRODUCT]), "alice", False,
            [f"{PRODUCT}/parental-leave.md"])  # fmt: skip
    # A right result of a product the response did not search proposes nothing for it.
    _judged(serving, _asked(serving, "bob", HOTEL, [PRODUCT]), "bob", False,
            [f"{PRODUCT}/no-such-policy.md", "catalog_products/p-1"])  # fmt: skip
    _judged(serving, _asked(serving, "dana", LAPTOP, [PRODUCT]), "dana", False,
            [f"{PRODUCT}/no-such-policy.md", f"{PRODUCT}/no-such-policy.md"])  # fmt: skip
    # Someone else's response, a response never logged, a helpful one, one naming nothing.
    _judged(serving, _asked(serving, "carol", LEAVE, [PRODUCT]), "mallory", False,
            [f"{PRODUCT}/whistleblowing.md"])  # fmt: skip
    _judged(serving, uuid.uuid4(), "erin", False, [f"{PRODUCT}/travel.md"])
    _judged(serving, _asked(serving, "frank", HOTEL, [PRODUCT]), "frank", True,
            [f"{PRODUCT}/travel.md"])  # fmt: skip
    _judged(serving, _asked(serving, "grace", HOTEL, [PRODUCT]), "grace", False, [])


def test_the_serving_role_writes_judgments_but_reads_neither_them_nor_the_queue(
    serving: Engine,
) -> None:
    _judgments(serving)
    for table in ("feedback", "query_log", "evaluation_candidate"):
        with serving.connect() as conn, pytest.raises(ProgrammingError, match="permission"):
            conn.execute(text(f"SELECT count(*) FROM {SCHEMA}.{table}"))


def test_feedback_list_collects_candidates_once_and_reviews_are_all_or_none(
    mesh_rag: MeshRag, engine: Engine, serving: Engine
) -> None:
    _judgments(serving)

    listed = mesh_rag.run("feedback", "list").stdout
    assert "3 new candidates collected" in listed
    assert (
        "judgments ignored: 1 on a response not in the query log, 1 on another caller's "
        "response; 1 right results ignored (not product/doc_id of a product the response "
        "searched)"
    ) in listed
    assert f"#1  {PRODUCT}  candidate  " in listed and "judged by alice" in listed
    assert f"    query: {LEAVE}\n    right documents: parental-leave.md\n" in listed
    assert "    right documents: no-such-policy.md\n" in listed  # dana's, each document once
    assert "3 candidates waiting for review" in listed
    assert mesh_rag.run("feedback", "list", "--product", PRODUCT).stdout.startswith(
        "0 new candidates collected"
    )
    assert [status for _, _, status in _statuses(engine)] == ["candidate"] * 3

    refused = mesh_rag.run("feedback", "accept", "--id", "1", "--id", "99", ok=False)
    assert refused.returncode == 1
    assert "nothing reviewed: no evaluation candidate 99" in refused.stderr
    no_reason = mesh_rag.run("feedback", "reject", "--id", "2", ok=False)
    assert no_reason.returncode == 1 and "--reason is required" in no_reason.stderr
    other = mesh_rag.run(
        "feedback", "accept", "--id", "1", "--product", "catalog_products", ok=False
    )
    assert other.returncode == 1
    assert f"candidate 1 is of product {PRODUCT}, not catalog_products" in other.stderr
    unknown = mesh_rag.run("feedback", "list", "--product", "nothing_here", ok=False)
    assert unknown.returncode == 1 and "unknown product 'nothing_here'" in unknown.stderr
    misplaced = mesh_rag.run("feedback", "accept", "--id", "1", "--all", ok=False)
    assert misplaced.returncode == 1 and "--all is not for it" in misplaced.stderr
    assert [status for _, _, status in _statuses(engine)] == ["candidate"] * 3

    accepted = mesh_rag.run("feedback", "accept", "--id", "1", "--reason", "a real miss").stdout
    assert f"#1  {PRODUCT}  accepted: {LEAVE}" in accepted
    assert "1 candidates accepted, recorded as " in accepted
    rejected = mesh_rag.run("feedback", "reject", "--id", "2", "--reason", "no such policy")
    assert "1 candidates rejected" in rejected.stdout
    again = mesh_rag.run("feedback", "accept", "--id", "2", "--id", "3", ok=False)
    assert again.returncode == 1 and "candidate 2 was already rejected by " in again.stderr

    assert _statuses(engine) == [
        (1, LEAVE, "accepted"), (2, HOTEL, "rejected"), (3, LAPTOP, "candidate"),
    ]  # fmt: skip
    reviewed = {c.id: c for c in list_candidates(engine, statuses=("accepted", "rejected"))}
    assert reviewed[1].review_reason == "a real miss"
    assert reviewed[2].review_reason == "no such policy"
    assert reviewed[1].reviewed_by and reviewed[1].reviewed_by.endswith("via mesh-rag feedback)")
    assert [
        (q.candidate_id, q.query, q.expected_doc_ids) for q in evaluation_set(engine, PRODUCT)
    ] == [(1, LEAVE, ["parental-leave.md"])]
    everything = mesh_rag.run("feedback", "list", "--all").stdout
    assert "1 candidates waiting for review (3 listed)" in everything
    assert f"#2  {PRODUCT}  rejected  " in everything and ": no such policy" in everything
    assert mesh_rag.run("feedback", "list").stdout.count(f"  {PRODUCT}  candidate  ") == 1


def test_accepted_feedback_and_nothing_unreviewed_changes_the_next_release_report(
    mesh_rag: MeshRag,
    engine: Engine,
    serving: Engine,
    contracts: dict[str, DataProductContract],
    products_dir: Path,
    access: SourceContext,
    minilm: Embedder,
) -> None:
    sync_all(contracts[PRODUCT], access, minilm)
    green = edited(products_dir, PRODUCT, "distance: cosine", 'distance: cosine\n  revision: "2"')
    sync_all(green, access, minilm)
    _judgments(serving)
    mesh_rag.run("feedback", "list")

    before = mesh_rag.run("release", "validate", "--product", PRODUCT).stdout
    assert "| feedback_queries |  | 0 | reported (accepted only) | reported |" in before
    assert "feedback_hit_rate" not in before

    mesh_rag.run("feedback", "accept", "--id", "1")
    mesh_rag.run("feedback", "reject", "--id", "2", "--reason", "no such policy")
    after = mesh_rag.run("release", "validate", "--product", PRODUCT).stdout

    # Only the accepted query is scored: the rejected and the unreviewed one name a document
    # no version holds, and would have brought the rate to 1/3.
    assert "| feedback_queries |  | 1 | reported (accepted only) | reported |" in after
    assert "| feedback_hit_rate | 1 | 1 | >= live - " in after
    metrics = get_version(engine, index_version_id(green)).metrics  # type: ignore[union-attr]
    assert metrics["feedback_hit_rate"] == {"live": 1.0, "candidate": 1.0, "passed": True}
    assert metrics["feedback_queries"]["candidate"] == 1


def test_the_dagster_job_collects_and_reviews_and_its_schedule_runs_only_when_judgments_wait(
    monkeypatch: pytest.MonkeyPatch,
    database_url: str,
    engine: Engine,
    serving: Engine,
    contracts: dict[str, DataProductContract],
) -> None:
    monkeypatch.setenv("MESH_RAG_DATABASE_URL", database_url)
    definitions = product_definitions(contracts[PRODUCT])
    schedule = definitions.get_schedule_def(f"collect_feedback_{PRODUCT}")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    job = definitions.resolve_job_def(feedback_job_name(contracts[PRODUCT]))

    def tick() -> Any:  # the tick's execution data: run requests, or a skip message
        with dg.build_schedule_context(resources={"index_store": IndexStore()}) as context:
            return schedule.evaluate_tick(context)

    assert tick().skip_message == f"no negative judgment naming {PRODUCT} waits"
    _judgments(serving)
    # The newest judgment naming the product keys the run: the scheduler launches it once.
    requests = tick().run_requests
    assert [r.run_key for r in requests] == ["judgment-5"]

    with dg.instance_for_test() as instance:
        collected = job.execute_in_process(instance=instance)
        assert collected.success
        reject = {"action": "reject", "ids": [2, 3], "reason": "no such policy"}
        run_config = {"ops": {f"{PRODUCT}_feedback": {"config": reject}}}
        rejected = job.execute_in_process(run_config=run_config, instance=instance)
        assert rejected.success
        twice = job.execute_in_process(
            run_config=run_config, instance=instance, raise_on_error=False
        )
        assert not twice.success
    assert [status for _, _, status in _statuses(engine)] == ["candidate", "rejected", "rejected"]
    with engine.connect() as conn:
        by = conn.execute(
            select(EvaluationCandidate.reviewed_by).where(EvaluationCandidate.id == 2)
        ).scalar_one()
    assert by is not None and "launcher unknown" in by
    # Judgments a collection ignores stay uncollected; their run key is the one already used.
    assert [r.run_key for r in tick().run_requests] == ["judgment-5"]
