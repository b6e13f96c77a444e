"""One bad record costs only itself: the rest of its file is served, the run succeeds, and the
record is listed, with its field and reason, by the CLI and by a warning check in the UI."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import pytest

from mesh_rag_pipelines_tests.acceptance.harness import Acceptance, Run
from mesh_rag_pipelines_tests.acceptance.tickets import (
    GROUP,
    PRODUCT,
    jsonl,
    landing_key,
    new_ticket_id,
    stove_complaint,
    ticket_upsert,
    unique_word,
)

SYNC_SECONDS = 180
LANDING_OBJECTS_TAG = "mesh_rag/landing_objects"


@dataclass(frozen=True)
class PoisonedLanding:
    key: str
    good_id: str
    good_body: str
    bad_id: str
    runs: list[Run]
    sync_error: str | None


def runs_reading(acceptance: Acceptance, key: str, since: float) -> list[Run]:
    """The runs the landing sensor requested for an object, by the tag naming their objects."""
    return [
        run
        for run in acceptance.runs(since=since)
        if key in json.loads(run.tags.get(LANDING_OBJECTS_TAG, "[]"))
    ]


@pytest.fixture(scope="module")
def poisoned_landing(acceptance: Acceptance) -> PoisonedLanding:
    """An object with one valid record and one whose body holds a NUL character."""
    acceptance.wait_until_idle(quiet=5)
    good_id, bad_id = new_ticket_id(), new_ticket_id()
    good_body = stove_complaint(unique_word("marrow"))
    bad_body = "The zipper pull snapped off\u0000 on the first day of the trip."
    key = landing_key("poison")
    landed_at = time.time()
    acceptance.put_landing_object(
        key, jsonl(ticket_upsert(good_id, good_body), ticket_upsert(bad_id, bad_body, "Zipper"))
    )
    try:
        acceptance.wait_for_sync(PRODUCT, landed_at, SYNC_SECONDS)
        sync_error = None
    except AssertionError as timeout:
        sync_error = str(timeout)
    runs = runs_reading(acceptance, key, landed_at)
    return PoisonedLanding(key, good_id, good_body, bad_id, runs, sync_error)


def test_the_valid_record_of_a_poisoned_file_becomes_queryable(
    acceptance: Acceptance, poisoned_landing: PoisonedLanding
) -> None:
    assert poisoned_landing.sync_error is None, poisoned_landing.sync_error
    landed = poisoned_landing
    hits = acceptance.hits_of(landed.good_id, landed.good_body, GROUP, PRODUCT, k=3)
    assert hits, f"{landed.good_id} is not served"


def test_every_run_reading_a_poisoned_file_succeeds(
    acceptance: Acceptance, poisoned_landing: PoisonedLanding
) -> None:
    runs = poisoned_landing.runs
    assert runs, f"no run read {poisoned_landing.key}"
    failed = {
        run.run_id: acceptance.run_errors(run.run_id) for run in runs if run.status != "SUCCESS"
    }
    assert failed == {}


def test_quarantine_list_names_the_bad_record_its_field_and_reason(
    acceptance: Acceptance, poisoned_landing: PoisonedLanding
) -> None:
    done = acceptance.cli("quarantine", "list", "--product", PRODUCT)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if poisoned_landing.key in line]
    assert len(lines) == 1, done.stdout[-3000:]
    assert "field body" in lines[0] and "NUL" in lines[0], lines[0]


def test_the_quarantine_check_warns_and_lists_the_bad_record(
    acceptance: Acceptance, poisoned_landing: PoisonedLanding
) -> None:
    run_ids = {run.run_id for run in poisoned_landing.runs}
    executions = [
        execution
        for execution in acceptance.check_executions(f"{PRODUCT}/chunks", "no_quarantined_records")
        if execution.run_id in run_ids
    ]
    failing = [e for e in executions if e.status != "SUCCEEDED"]
    assert [(e.status, e.severity) for e in failing] == [("FAILED", "WARN")], executions
    assert poisoned_landing.key in failing[0].metadata.get("records", ""), failing[0].metadata


def test_a_build_of_a_product_with_a_quarantined_record_exits_0(
    acceptance: Acceptance, poisoned_landing: PoisonedLanding
) -> None:
    acceptance.cli_ok("build", "--product", PRODUCT, timeout=1800)
