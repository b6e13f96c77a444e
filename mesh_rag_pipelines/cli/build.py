"""`mesh-rag build` and `mesh-rag demo`: every shard of every product, run in this process and
recorded in the local Dagster instance (so `mesh-rag ui` shows the runs), then a summary of
what the runs did and, for each failure, its cause, once."""

from __future__ import annotations

import shutil
import textwrap
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mesh_rag_pipelines.cli.session import Session
from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.settings import REPO_ROOT, Settings

# Runs report through this summary; Dagster's own console log would repeat every error as a
# stack trace per shard.
_QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
SAMPLE_QUERY = "How many weeks of paid leave does a primary caregiver get after a birth?"
_FAILURE_EVENTS = {"STEP_FAILURE", "RESOURCE_INIT_FAILURE"}


def dagster_home(settings: Settings) -> Path:
    """The Dagster instance of the commands: DAGSTER_HOME, else the local one in
    MESH_RAG_HOME/dagster with the repository's dagster.yaml, so that runs of `mesh-rag build`
    show in `mesh-rag ui`, from any working directory."""
    if settings.dagster_home:
        return settings.dagster_home
    home = settings.home / "dagster"
    home.mkdir(exist_ok=True)
    if (REPO_ROOT / "dagster.yaml").exists():
        shutil.copyfile(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    return home


@dataclass
class Tally:
    """What one product's runs did, summed over its shards."""

    documents_changed: int = 0
    documents_deleted: int = 0
    texts_embedded: int = 0
    cache_hits: int = 0
    quarantined: int = 0
    model_loads: int = 0
    failed: bool = False

    def add(self, metadata: dict[str, Any]) -> None:
        for name in ("documents_changed", "documents_deleted", "texts_embedded", "cache_hits"):
            setattr(self, name, getattr(self, name) + int(metadata.get(name, 0)))
        self.quarantined += int(metadata.get("quarantined", 0))
        self.model_loads += bool(metadata.get("model_loaded", False))

    def line(self, product: str) -> str:
        model = (
            f"model loaded in {self.model_loads} run{'s' * (self.model_loads != 1)}"
            if self.model_loads
            else "no model loaded"
        )
        text = (
            f"{product}: {self.documents_changed} documents changed, {self.documents_deleted} "
            f"deleted; {self.texts_embedded} texts embedded, {self.cache_hits} cache hits; {model}"
        )
        if self.quarantined:
            plural = "s" * (self.quarantined != 1)
            text += (
                f"; {self.quarantined} record{plural} quarantined "
                f"(`mesh-rag quarantine list --product {product}`)"
            )
        return text


@dataclass
class Failures:
    """Each distinct failure once, with the shards it happened in."""

    shards: dict[tuple[str, str], list[str]] = field(default_factory=lambda: defaultdict(list))

    def add(self, where: str, shard: str | None, problems: list[str]) -> None:
        for problem in problems:
            self.shards[(where, problem)].append(shard or "")

    def lines(self) -> list[str]:
        out = []
        for (where, problem), shards in self.shards.items():
            named = [s for s in shards if s]
            scope = f" shard{'s' * (len(named) > 1)} {', '.join(named)}" if named else ""
            out.append(f"{where}{scope}: {problem}")
        return out


def build(session: Session, products: list[str] | None = None) -> None:
    """Run the sync job for every shard, in this process, recorded in the Dagster instance.

    Every shard runs even if another fails (shards are independent); the failures are listed
    at the end, each once with its shards, after each product's whole-index verdict, and the
    command exits non-zero.
    """
    import dagster as dg

    from mesh_rag_pipelines.orchestration.jobs import VALIDATE_RELEASES, sync_job_name
    from mesh_rag_pipelines.orchestration.product import platform_definitions
    from mesh_rag_pipelines.orchestration.releases import release_key

    instance = dg.DagsterInstance.from_config(str(dagster_home(session.settings)))
    chosen = [session.contract(p) for p in products] if products else session.contracts()
    definitions = platform_definitions(chosen)
    tallies = {c.name: Tally() for c in chosen}
    failures = Failures()
    for path in [] if products else session.broken_files():
        failures.add(f"contract {path}", None, ["broken, left out (`mesh-rag check`)"])
    for c in chosen:
        _record_source_versions(instance, c, session.settings)
    jobs = {c.name: definitions.resolve_job_def(sync_job_name(c)) for c in chosen}
    # Shard by shard across products, so that every product is partly served early on.
    for position in range(max((c.shards for c in chosen), default=0)):
        for c in chosen:
            if position < c.shards:
                shard = f"{position:02d}"
                outcome = _execute(f"{jobs[c.name].name} shard {shard}", jobs[c.name], instance,
                                   partition_key=shard)  # fmt: skip
                failures.add(jobs[c.name].name, shard, outcome.problems)
                tallies[c.name].failed |= bool(outcome.problems)
                for metadata in outcome.materializations:
                    tallies[c.name].add(metadata)
    # A candidate version that the shards just completed is validated (and swapped where the
    # contract says so); a product with a failed shard is not judged.
    ready = [c for c in chosen if not tallies[c.name].failed]
    if ready:
        releases = definitions.resolve_job_def(VALIDATE_RELEASES)
        outcome = _execute("releases", releases, instance,
                           asset_selection=[release_key(c) for c in ready])  # fmt: skip
        failures.add("releases", None, outcome.problems)
    skipped = [c.name for c in chosen if tallies[c.name].failed]
    if skipped:
        print(f"releases: not judged for {', '.join(skipped)} (shards failed)")
    _print_verdicts(chosen, session.settings)
    for name, tally in tallies.items():
        print(tally.line(name))
    lines = failures.lines()
    if lines:
        print(f"\n{len(lines)} failure{'s' * (len(lines) != 1)}:", *lines, sep="\n  ")
        raise SystemExit(1)


def _record_source_versions(
    instance: Any, product: DataProductContract, settings: Settings
) -> None:
    """What the runs are about to read, recorded as the product's sensor would: so the UI knows
    the index holds it, and the sensor's first look finds nothing new."""
    from mesh_rag_pipelines.connections import source_context
    from mesh_rag_pipelines.orchestration.source_versions import source_version_events
    from mesh_rag_pipelines.pipeline import current_source_versions

    try:
        versions = current_source_versions(product, source_context(product, settings))
    except Exception:  # noqa: BLE001 - the runs report an unreachable source, with its cause
        return
    for shard, seen in versions.items():
        for event in source_version_events(product, shard, seen.data_version, {}):
            instance.report_runless_asset_event(event)


@dataclass
class Outcome:
    problems: list[str]
    materializations: list[dict[str, Any]]


def _execute(where: str, job: Any, instance: Any, **options: Any) -> Outcome:
    """Run a job in this process: its problems and the metadata of what it materialized."""
    started = time.perf_counter()
    try:
        result = job.execute_in_process(
            instance=instance, run_config=_QUIET, raise_on_error=False, **options
        )
        outcome = Outcome(_run_problems(result), _materialized(result))
    except Exception as exc:  # noqa: BLE001 - reported with the others at the end
        outcome = Outcome([f"{type(exc).__name__}: {exc}"], [])
    status = "ok" if not outcome.problems else "FAILED"
    print(f"{where}: {status} in {time.perf_counter() - started:.1f}s")
    return outcome


def _materialized(result: Any) -> list[dict[str, Any]]:
    return [
        {
            key: value.value
            for key, value in event.step_materialization_data.materialization.metadata.items()
        }
        for event in result.all_events
        if event.event_type_value == "ASSET_MATERIALIZATION"
    ]


def _run_problems(result: Any) -> list[str]:
    """Failed steps, resources and blocking checks of one run, each with its cause."""
    problems = []
    for event in result.all_events:
        error = getattr(event.event_specific_data, "error", None)
        if error is None or event.event_type_value not in _FAILURE_EVENTS:
            continue
        where = f"step {event.step_key}" if event.step_key else "resources"
        problems.append(f"{where} failed: {_cause(error)}")
    problems += [
        f"check {check.asset_key.to_user_string()}:{check.check_name} failed"
        for check in result.get_asset_check_evaluations()
        if not check.passed and check.blocking
    ]
    if not result.success and not problems:
        problems.append("run failed")
    return problems


def _cause(error: Any) -> str:
    """The user-facing message of an error: Dagster wraps what our code raised."""
    while error.cause is not None and "Error occurred while" in error.message:
        error = error.cause
    return (error.message.strip().splitlines() or [""])[0]


def _print_verdicts(contracts: list[DataProductContract], settings: Settings) -> None:
    """The whole-product verdict, which no single shard's run can give."""
    from mesh_rag_pipelines.connections import store_engine
    from mesh_rag_pipelines.store.health import index_health

    for product in contracts:
        try:
            health = index_health(store_engine(settings), product.name)
        except Exception as exc:  # noqa: BLE001 - the failures listed after say why
            print(f"{product.name}: no verdict, the store cannot be read ({type(exc).__name__})")
            continue
        if health is None:
            print(f"{product.name}: no live index")
            continue
        verdict = "matches its source" if health.consistent else "DOES NOT match its source"
        print(
            f"{product.name}: index {verdict}: {health.live_documents} documents, "
            f"{health.rows} rows of {health.expected_rows} expected, "
            f"{health.missing_documents} documents missing, {health.ghost_rows} ghost rows"
        )


def demo(session: Session) -> None:
    """Seed the sample sources, build every product, query, and say how to open the UI."""
    from mesh_rag_pipelines.cli import main
    from mesh_rag_pipelines.cli.operations import seed

    started = time.perf_counter()
    seed(session)
    build(session)
    print(f"built all products in {time.perf_counter() - started:.1f}s\n")
    main(["query", SAMPLE_QUERY, "--group", "employees", "-k", "3"])
    print()
    main(["answer", SAMPLE_QUERY, "--group", "employees", "-k", "2"])
    print(
        textwrap.dedent("""
        In this shell, first: export MESH_RAG_PROFILE=local   (embedded services, this machine)
        Open the Dagster UI (assets, checks, freshness, sensors, backfills), one code location
        per domain, on the instance that recorded these runs:
          .venv/bin/mesh-rag ui                     # then http://127.0.0.1:3000
        Query again, as a caller of group employees (answers cite their passages):
          .venv/bin/mesh-rag query "expensing a hotel in New York" --group employees
          .venv/bin/mesh-rag answer "expensing a hotel in New York" --group employees
        Stop the embedded PostgreSQL and S3 server:
          .venv/bin/mesh-rag services stop""")
    )
