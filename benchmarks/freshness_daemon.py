"""Freshness through the daemon, per source kind: from a change a user makes (a catalog row
edited, a policy file written, a ticket landed in S3) to the first query that returns it, with
the product running as users run it: `mesh-rag demo`, then `mesh-rag ui` (webserver, daemon,
code servers and warm run workers as separate processes), driven by the acceptance suite's
harness. Queries run in this process, as an application keeps its model loaded, every 0.25 s.

The landing zone is measured alone (its target is seconds); the table and the folder, each
polled on its contract's cadence (the samples ship `poll_interval: 30s`), are changed in turns.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.results import RESULTS_DIR
from mesh_rag_pipelines_tests.acceptance.harness import Acceptance, free_port
from mesh_rag_pipelines_tests.acceptance.tickets import jsonl, ticket_upsert

KINDS = ("landing", "table", "files")
POLL_SECONDS = 0.25
TIMEOUT_SECONDS = 300


@dataclass
class Change:
    kind: str
    product: str
    doc_id: str
    query: str
    made_at: float
    seen_after: float | None = None


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


class Probe:
    """Queries as an application does: the model loaded once, the serving role's connection."""

    def __init__(self, session: Acceptance):
        os.environ.update(session.env)
        from mesh_rag_pipelines.cli.session import Session
        from mesh_rag_pipelines.connections import serving_engine
        from mesh_rag_pipelines.embedding import query_embedder_for
        from mesh_rag_pipelines.settings import Settings

        settings = Settings.from_env()
        self.contracts = {c.name: c for c in Session(settings).contracts()}
        self.engine = serving_engine(settings)
        spec = self.contracts["hr_policies"].embedding
        self.embedders = {spec.model_id: query_embedder_for(spec)}
        self.embedders[spec.model_id].embed(["warm up"])

    def returns(self, change: Change) -> bool:
        from mesh_rag_pipelines.retrieval import Caller, search

        contract = self.contracts[change.product]
        hits = search(
            self.engine,
            [contract],
            change.query,
            Caller.of_product(contract),
            k=5,
            embedders=self.embedders,
        )
        return any(hit.doc_id == change.doc_id and change.query[:40] in hit.text for hit in hits)


def _watch(probe: Probe, pending: list[Change], done: threading.Event) -> None:
    while not done.is_set() or any(c.seen_after is None for c in pending):
        for change in [c for c in pending if c.seen_after is None]:
            if probe.returns(change):
                change.seen_after = time.time() - change.made_at
            elif time.time() - change.made_at > TIMEOUT_SECONDS:
                change.seen_after = float("inf")
        time.sleep(POLL_SECONDS)


def _land_ticket(session: Acceptance, n: int) -> Change:
    marker = uuid.uuid4().hex[:8]
    doc_id = f"T-F{marker}"
    body = f"Order {marker}: the stove {marker} arrived with a cracked burner plate, case {n}."
    event = jsonl(ticket_upsert(doc_id, body, subject=f"Cracked burner {marker}"))
    change = Change("landing", "support_tickets", doc_id, body, time.time())
    session.put_landing_object(f"support_tickets/freshness-{doc_id}.jsonl", event)
    return change


def _edit_row(session: Acceptance, n: int) -> Change:
    """A row of its own for every change: a row edited again before its first edit is synced
    would hide that edit for good (the index rightly serves the newer text)."""
    sku = session.psql(
        "SELECT sku FROM sample_sources.catalog_products ORDER BY sku OFFSET :n LIMIT 1", n=n
    )[0][0]
    marker = uuid.uuid4().hex[:8]
    text = f"Revised {marker}: now shipped with a repair kit {marker} and a stuff sack."
    change = Change("table", "catalog_products", sku, text, time.time())
    session.psql(
        "UPDATE sample_sources.catalog_products SET revision = revision + 1, "
        "updated_at = now(), description = :d WHERE sku = :s",
        d=text,
        s=sku,
    )
    return change


def _write_policy(session: Acceptance, n: int) -> Change:
    marker = uuid.uuid4().hex[:8]
    name = f"freshness-{marker}.md"
    text = f"Bicycle commuters may claim {marker} euros a month toward maintenance, rule {n}."
    change = Change("files", "hr_policies", name, text, time.time())
    session.write_sample_file("hr_policies", name, f"# Commuting {marker}\n\n{text}\n")
    return change


MAKERS: dict[str, Callable[[Acceptance, int], Change]] = {
    "landing": _land_ticket,
    "table": _edit_row,
    "files": _write_policy,
}


def _measure(
    session: Acceptance, probe: Probe, kinds: tuple[str, ...], count: int, spacing: float
) -> list[Change]:
    pending: list[Change] = []
    done = threading.Event()
    watcher = threading.Thread(target=_watch, args=(probe, pending, done))
    watcher.start()
    try:
        for n in range(count):
            for kind in kinds:
                pending.append(MAKERS[kind](session, n))
                time.sleep(spacing)
    finally:
        done.set()
        watcher.join()
    return pending


def run(argv: list[str]) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="freshness_daemon")
    parser.add_argument("--changes", type=int, default=20, help="changes per source kind")
    args = parser.parse_args(argv)
    session = Acceptance(Path(tempfile.mkdtemp(prefix="mesh_rag_freshness_")))
    try:
        session.prepare()
        session.run_demo()
        session.start_ui(free_port())
        session.wait_until_ready()
        session.wait_for_first_ticks()
        session.wait_until_idle()
        probe = Probe(session)
        landing = _measure(session, probe, ("landing",), args.changes, spacing=4.0)
        polled = _measure(session, probe, ("table", "files"), args.changes, spacing=7.5)
    finally:
        session.stop()
    changes = landing + polled
    figures: dict[str, Any] = {}
    details: dict[str, Any] = {"changes": args.changes, "poll_interval": "30s"}
    for kind in KINDS:
        lags = [c.seen_after for c in changes if c.kind == kind and c.seen_after is not None]
        seconds = [lag for lag in lags if lag != float("inf")]
        figures[f"freshness_daemon_p50_s_{kind}"] = round(statistics.median(seconds), 2)
        figures[f"freshness_daemon_p95_s_{kind}"] = round(_percentile(seconds, 0.95), 2)
        details[kind] = [round(s, 2) for s in seconds]
        details[f"{kind}_not_seen_in_{TIMEOUT_SECONDS}_s"] = len(lags) - len(seconds)
    (RESULTS_DIR / "freshness_daemon.details.json").write_text(json.dumps(details, indent=2))
    return figures
