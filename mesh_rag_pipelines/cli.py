"""`mesh-rag`: build, query and run the local services from the command line."""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
import time
import warnings
from pathlib import Path

from mesh_rag_pipelines import settings
from mesh_rag_pipelines.contracts import DataProductContract, load_contracts

REPO_ROOT = Path(__file__).resolve().parent.parent
_QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
SAMPLE_QUERY = "How many weeks of paid leave does a primary caregiver get after a birth?"


def _use_repo_dagster_home() -> None:
    """Runs launched here show up in `dagster dev` started from the repository root."""
    if not os.environ.get("DAGSTER_HOME") and (REPO_ROOT / "dagster.yaml").exists():
        os.environ["DAGSTER_HOME"] = str(REPO_ROOT)
        os.chdir(REPO_ROOT)


def build(products: list[str] | None = None) -> None:
    """Run the build job for every shard, in this process, recorded in the Dagster instance."""
    import dagster as dg

    from mesh_rag_pipelines.definitions import defs
    from mesh_rag_pipelines.defs.jobs import BUILD_ALL, sync_job_name

    _use_repo_dagster_home()
    instance = dg.DagsterInstance.get()
    job_names = [sync_job_name(_contract(p)) for p in products] if products else [BUILD_ALL]
    for job_name in job_names:
        job = defs().resolve_job_def(job_name)
        for partition_key in job.partitions_def.get_partition_keys():  # type: ignore[union-attr]
            started = time.perf_counter()
            outcome = job.execute_in_process(
                partition_key=partition_key, instance=instance, run_config=_QUIET
            )
            status = "ok" if outcome.success else "FAILED"
            seconds = time.perf_counter() - started
            print(f"{job_name} shard {partition_key}: {status} in {seconds:.1f}s")
            if not outcome.success:
                raise SystemExit(1)


def _contract(product: str) -> DataProductContract:
    contracts = {c.name: c for c in load_contracts(settings.contracts_dir())}
    if product not in contracts:
        raise SystemExit(f"unknown product {product!r}; known: {', '.join(sorted(contracts))}")
    return contracts[product]


def query(text: str, products: list[str] | None, groups: list[str] | None, k: int) -> None:
    from mesh_rag_pipelines.connections import store_engine
    from mesh_rag_pipelines.retrieval import search

    contracts = load_contracts(settings.contracts_dir())
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

    seeded = seed_sources(load_contracts(settings.contracts_dir()), store_engine(), s3_client())
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
    query_cmd = commands.add_parser("query", help="search the live indexes")
    query_cmd.add_argument("text")
    query_cmd.add_argument("--product", action="append")
    query_cmd.add_argument(
        "--group", action="append", help="caller's ACL group (repeatable); none means no ACL filter"
    )
    query_cmd.add_argument("-k", type=int, default=10)
    services_cmd = commands.add_parser("services", help="embedded PostgreSQL and local S3")
    services_cmd.add_argument("action", choices=["start", "stop"])
    args = parser.parse_args(argv)
    if args.command == "demo":
        demo()
    elif args.command == "build":
        build(args.product)
    elif args.command == "seed":
        seed()
    elif args.command == "query":
        query(args.text, args.product, args.group, args.k)
    elif args.command == "services":
        services(args.action)


if __name__ == "__main__":
    main(sys.argv[1:])
