"""`mesh-rag`: build, query and run the local services from the command line."""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
import time
import warnings
from pathlib import Path
from typing import Any

from mesh_rag_pipelines import settings
from mesh_rag_pipelines.contracts import DataProductContract, check_contracts, load_contracts

REPO_ROOT = Path(__file__).resolve().parent.parent
_QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
SAMPLE_QUERY = "How many weeks of paid leave does a primary caregiver get after a birth?"


def _use_repo_dagster_home() -> None:
    """Runs launched here show up in `dagster dev` started from the repository root."""
    if not os.environ.get("DAGSTER_HOME") and (REPO_ROOT / "dagster.yaml").exists():
        os.environ["DAGSTER_HOME"] = str(REPO_ROOT)
        os.chdir(REPO_ROOT)


def build(products: list[str] | None = None) -> None:
    """Run the build job for every shard, in this process, recorded in the Dagster instance.

    Every shard runs even if another fails (shards are independent); the failures are listed
    at the end, after each product's whole-index verdict, and the command exits non-zero.
    """
    import dagster as dg

    from mesh_rag_pipelines.definitions import defs
    from mesh_rag_pipelines.defs.jobs import BUILD_ALL, sync_job_name

    _use_repo_dagster_home()
    instance = dg.DagsterInstance.get()
    chosen = [_contract(p) for p in products] if products else _contracts()
    job_names = [sync_job_name(c) for c in chosen] if products else [BUILD_ALL]
    failures: list[str] = []
    for job_name in job_names:
        job = defs().resolve_job_def(job_name)
        for partition_key in job.partitions_def.get_partition_keys():  # type: ignore[union-attr]
            started = time.perf_counter()
            try:
                outcome = job.execute_in_process(
                    partition_key=partition_key,
                    instance=instance,
                    run_config=_QUIET,
                    raise_on_error=False,
                )
                problems = _run_problems(outcome)
            except Exception as exc:  # noqa: BLE001 - reported with the others at the end
                problems = [f"{type(exc).__name__}: {exc}"]
            status = "ok" if not problems else "FAILED"
            seconds = time.perf_counter() - started
            print(f"{job_name} shard {partition_key}: {status} in {seconds:.1f}s")
            failures += [f"{job_name} shard {partition_key}: {p}" for p in problems]
    _print_verdicts(chosen)
    if failures:
        print(f"\n{len(failures)} failures:", *failures, sep="\n  ")
        raise SystemExit(1)


def _run_problems(outcome: Any) -> list[str]:
    """Failed steps, resources and blocking checks of one run, each with its first error line."""
    problems = []
    for event in outcome.all_events:
        error = getattr(event.event_specific_data, "error", None)
        if error is None or event.event_type_value not in _FAILURE_EVENTS:
            continue
        where = f"step {event.step_key}" if event.step_key else "resources"
        problems.append(f"{where} failed: {(error.message.strip().splitlines() or [''])[0]}")
    problems += [
        f"check {check.asset_key.to_user_string()}:{check.check_name} failed"
        for check in outcome.get_asset_check_evaluations()
        if not check.passed and check.blocking
    ]
    if not outcome.success and not problems:
        problems.append("run failed")
    return problems


_FAILURE_EVENTS = {"STEP_FAILURE", "RESOURCE_INIT_FAILURE"}


def _print_verdicts(contracts: list[DataProductContract]) -> None:
    """The whole-product verdict, which no single shard's run can give."""
    from mesh_rag_pipelines.connections import store_engine
    from mesh_rag_pipelines.store.health import index_health

    for contract in contracts:
        try:
            health = index_health(store_engine(), contract.name)
        except Exception as exc:  # noqa: BLE001 - the failures listed after say why
            print(f"{contract.name}: no verdict, the store cannot be read ({type(exc).__name__})")
            continue
        if health is None:
            print(f"{contract.name}: no live index")
            continue
        verdict = "matches its source" if health.consistent else "DOES NOT match its source"
        print(
            f"{contract.name}: index {verdict}: {health.live_documents} documents, "
            f"{health.rows} rows of {health.expected_rows} expected, "
            f"{health.missing_documents} documents missing, {health.ghost_rows} ghost rows"
        )


def check(directory: Path | None = None) -> None:
    """Load every contract and list every problem; exit non-zero if there is one."""
    contracts, problems = check_contracts(directory or settings.contracts_dir())
    for contract in contracts:
        print(f"ok      {contract.name} ({contract.domain}, {contract._origin})")
    for problem in problems:
        print(f"INVALID {problem}")
    if problems:
        files = len({p.path for p in problems})
        print(f"\n{len(problems)} problems in {files} contract files")
        raise SystemExit(1)


def quarantine(action: str, products: list[str] | None, source: str | None) -> None:
    """List quarantined records, or re-drive a product's once their cause is fixed."""
    from mesh_rag_pipelines.connections import store_engine
    from mesh_rag_pipelines.store.quarantine import quarantined_records, redrive

    engine = store_engine()
    if action == "list":
        records = quarantined_records(engine, products)
        for r in records:
            field = f" field {r.field}" if r.field else ""
            print(f"{r.product}  {r.source_ref}  {r.record_ref}{field}: {r.reason}")
        print(f"{len(records)} quarantined records")
        return
    if not products or len(products) != 1:
        raise SystemExit("quarantine redrive needs exactly one --product")
    count = redrive(engine, _contract(products[0]), source)
    print(f"{products[0]}: {count} quarantined records will be read again; building")
    build(products)


def _contracts() -> list[DataProductContract]:
    return load_contracts(settings.contracts_dir())


def _contract(product: str) -> DataProductContract:
    contracts = {c.name: c for c in _contracts()}
    if product not in contracts:
        raise SystemExit(f"unknown product {product!r}; known: {', '.join(sorted(contracts))}")
    return contracts[product]


def query(text: str, products: list[str] | None, groups: list[str] | None, k: int) -> None:
    from mesh_rag_pipelines.connections import store_engine
    from mesh_rag_pipelines.retrieval import search

    contracts = _contracts()
    hits = search(store_engine(), contracts, text, k=k, products=products, groups=groups)
    print(f"query: {text}")
    if not hits:
        print("  no results")
    for rank, hit in enumerate(hits, start=1):
        snippet = textwrap.shorten(hit.text.split("\n\n", 1)[-1], 110)
        print(
            f"{rank:>3}. {hit.score:.3f}  {hit.product}/{hit.doc_id} v{hit.doc_version} "
            f"chunk {hit.chunk_no}  [{hit.section or hit.title or ''}]\n       {snippet}"
        )


def seed() -> None:
    from mesh_rag_pipelines.connections import s3_client, store_engine
    from mesh_rag_pipelines.samples import seed_sources

    seeded = seed_sources(_contracts(), store_engine(), s3_client())
    for product, count in seeded.items():
        print(f"seeded {product}: {count}")


def services(action: str) -> None:
    from mesh_rag_pipelines.services.embedded_postgres import stop_embedded_postgres
    from mesh_rag_pipelines.services.local_s3 import stop_local_s3

    if action == "stop":
        print(
            "postgres stopped"
            if stop_embedded_postgres(settings.home() / "pg")
            else "postgres not running"
        )
        print("s3 stopped" if stop_local_s3(settings.home()) else "s3 not running")
        return
    from mesh_rag_pipelines.connections import s3_endpoint_url
    from mesh_rag_pipelines.store.database import database_url

    print(f"database: {database_url()}")
    print(f"s3: {s3_endpoint_url()}")


def demo() -> None:
    """Seed the sample sources, build every product, query, and say how to open the UI."""
    started = time.perf_counter()
    seed()
    build()
    print(f"built all products in {time.perf_counter() - started:.1f}s\n")
    query(SAMPLE_QUERY, None, None, 3)
    print(
        textwrap.dedent("""
        Open the Dagster UI (assets, checks, sensors, schedules, backfills):
          DAGSTER_HOME=$PWD .venv/bin/dagster dev -w workspace.yaml   # then http://127.0.0.1:3000
        Query again:
          .venv/bin/mesh-rag query "expensing a hotel in New York" --group employees
        Stop the embedded PostgreSQL and S3 server:
          .venv/bin/mesh-rag services stop""")
    )


def main(argv: list[str] | None = None) -> None:
    # Library deprecation and preview notices are for developers, not for the command's output.
    warnings.simplefilter("ignore")
    parser = argparse.ArgumentParser(prog="mesh-rag", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("demo", help="seed sample sources, build everything, run a sample query")
    build_cmd = commands.add_parser("build", help="build products (every shard)")
    build_cmd.add_argument("--product", action="append")
    commands.add_parser("seed", help="load sample products' seed data into their sources")
    check_cmd = commands.add_parser("check", help="validate every contract, listing all problems")
    check_cmd.add_argument("directory", nargs="?", type=Path)
    query_cmd = commands.add_parser("query", help="search the live indexes")
    query_cmd.add_argument("text")
    query_cmd.add_argument("--product", action="append")
    query_cmd.add_argument(
        "--group", action="append", help="caller's ACL group (repeatable); none means no ACL filter"
    )
    query_cmd.add_argument("-k", type=int, default=10)
    quarantine_cmd = commands.add_parser(
        "quarantine", help="list quarantined records, or read a product's again once fixed"
    )
    quarantine_cmd.add_argument("action", choices=["list", "redrive"])
    quarantine_cmd.add_argument("--product", action="append")
    quarantine_cmd.add_argument("--source", help="only the records of this file or table")
    services_cmd = commands.add_parser("services", help="embedded PostgreSQL and local S3")
    services_cmd.add_argument("action", choices=["start", "stop"])
    args = parser.parse_args(argv)
    if args.command == "demo":
        demo()
    elif args.command == "build":
        build(args.product)
    elif args.command == "seed":
        seed()
    elif args.command == "check":
        check(args.directory)
    elif args.command == "query":
        query(args.text, args.product, args.group, args.k)
    elif args.command == "quarantine":
        quarantine(args.action, args.product, args.source)
    elif args.command == "services":
        services(args.action)


if __name__ == "__main__":
    main(sys.argv[1:])
