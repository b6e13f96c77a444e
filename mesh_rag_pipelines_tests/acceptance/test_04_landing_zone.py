"""A change file landed in S3 is read by the landing sensor's run and becomes queryable; the
seconds from landing to the first query that returns it are printed."""

from __future__ import annotations

import time

from mesh_rag_pipelines_tests.acceptance.harness import Acceptance, wait_for
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


def test_a_landed_upsert_becomes_queryable(acceptance: Acceptance) -> None:
    acceptance.wait_until_idle(quiet=5)
    ticket_id, word = new_ticket_id(), unique_word("brindle")
    body = stove_complaint(word)
    landed_at = time.time()
    acceptance.put_landing_object(landing_key("upsert"), jsonl(ticket_upsert(ticket_id, body)))
    acceptance.wait_for_sync(PRODUCT, landed_at, SYNC_SECONDS)
    hits = wait_for(
        lambda: acceptance.hits_of(ticket_id, body, GROUP, PRODUCT, k=3),
        SYNC_SECONDS,
        f"a query to return {ticket_id}",
    )
    print(f"\nlanded in S3 -> returned by a query: {time.time() - landed_at:.1f} s")
    assert word in hits[0]["text"]
