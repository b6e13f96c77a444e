"""`mesh-rag`: build, query and run the local services from the command line."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import shutil
import signal
import subprocess
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


def _use_local_dagster_home() -> None:
    """Without DAGSTER_HOME, the local instance in MESH_RAG_HOME/dagster (with the repository's
    dagster.yaml): runs of `mesh-rag build` show in `mesh-rag ui`, from any working directory."""
    if os.environ.get("DAGSTER_HOME"):
        return
    dagster_home = settings.home() / "dagster"
    dagster_home.mkdir(exist_ok=True)
    if (REPO_ROOT / "dagster.yaml").exists():
        shutil.copyfile(REPO_ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(dagster_home)


def build(products: list[str] | None = None) -> None:
    """Run the build job for every shard, in this process, recorded in the Dagster instance.

    Every shard runs even if another fails (shards are independent); the failures are listed
    at the end, after each product's whole-index verdict, and the command exits non-zero.
    """
    import dagster as dg

    from mesh_rag_pipelines.definitions import defs
    from mesh_rag_pipelines.defs.jobs import VALIDATE_RELEASES, sync_job_name
    from mesh_rag_pipelines.defs.releases import release_key

    _use_local_dagster_home()
    instance = dg.DagsterInstance.get()
    chosen = [_contract(p) for p in products] if products else _contracts()
    definitions = defs()
    jobs = [definitions.resolve_job_def(sync_job_name(c)) for c in chosen]
    shard_keys = [job.partitions_def.get_partition_keys() for job in jobs]  # type: ignore[union-attr]
    failures: list[str] = []
    # Shard by shard across products, so that every product is partly served early on.
    for position in range(max(map(len, shard_keys), default=0)):
        for job, keys in zip(jobs, shard_keys, strict=True):
            if position < len(keys):
                where = f"{job.name} shard {keys[position]}"
                failures += _execute(where, job, instance, partition_key=keys[position])
    # A candidate version that the shards just completed is validated (and swapped where the
    # contract says so); without one this is a no-op.
    releases = definitions.resolve_job_def(VALIDATE_RELEASES)
    selection = [release_key(c) for c in chosen]
    failures += _execute("releases", releases, instance, asset_selection=selection)
    _print_verdicts(chosen)
    if failures:
        print(f"\n{len(failures)} failures:", *failures, sep="\n  ")
        raise SystemExit(1)


def _execute(where: str, job: Any, instance: Any, **options: Any) -> list[str]:
    """Run a job in this process; its problems, each prefixed with `where`."""
    started = time.perf_counter()
    try:
        outcome = job.execute_in_process(
            instance=instance, run_config=_QUIET, raise_on_error=False, **options
        )
        problems = _run_problems(outcome)
    except Exception as exc:  # noqa: BLE001 - reported with the others at the end
        problems = [f"{type(exc).__name__}: {exc}"]
    status = "ok" if not problems else "FAILED"
    print(f"{where}: {status} in {time.perf_counter() - started:.1f}s")
    return [f"{where}: {problem}" for problem in problems]


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


def release(
    action: str, product: str, version: str | None, force: bool, reason: str | None
) -> None:
    """Show, validate, swap, roll back or retire a product's index versions."""
    from mesh_rag_pipelines import releases
    from mesh_rag_pipelines.connections import store_engine
    from mesh_rag_pipelines.embedding import embedder_for
    from mesh_rag_pipelines.releases.status import release_status
    from mesh_rag_pipelines.store.index_versions import index_version_id

    engine = store_engine()
    contract = _contract(product)
    target = version or index_version_id(contract)
    actor = getpass.getuser()
    try:
        if action == "validate":
            report = releases.validate_version(engine, contract, target, embedder_for, actor=actor)
            print(report.markdown())
            if not report.passed:
                raise SystemExit(1)
        elif action == "swap":
            result = releases.swap(engine, product, target, actor=actor, force=force, reason=reason)
            took = f"{result.seconds * 1000:.1f} ms"
            print(f"{product}: {result.live} is live (was {result.previous}); {took}")
        elif action == "rollback":
            result = releases.rollback(engine, product, actor=actor, reason=reason)
            print(f"{product}: rolled back to {result.live} (was {result.previous})")
        elif action == "retire":
            if not version:
                raise SystemExit("release retire needs --version")
            releases.retire(engine, product, version, actor=actor, reason=reason)
            print(f"{product}: {version} retired")
    except (releases.ReleaseError, ValueError) as exc:
        raise SystemExit(str(exc)) from exc
    status = release_status(engine, contract)
    print(
        f"\n{product}: live {status.live}, candidate {status.candidate or 'none'}, "
        f"rollback target {status.rollback_target or 'none'}"
    )
    print(status.versions_markdown())
    if action == "status":
        print("\n" + status.history_markdown())


def evaluate(
    product: str, queries_file: Path, qrels_file: Path, version: str | None, k: int
) -> None:
    """nDCG@10 and recall@k of a product's version on BEIR judgments, scoring documents."""
    from mesh_rag_pipelines.connections import store_engine
    from mesh_rag_pipelines.retrieval import evaluation

    qrels = evaluation.load_qrels(qrels_file)
    queries = evaluation.load_queries(queries_file, judged=qrels)
    scores = evaluation.evaluate(
        store_engine(), _contract(product), queries, qrels, recall_k=k, version=version
    )
    print(
        f"{product} {version or '(live)'}: nDCG@10 {scores.ndcg10:.5f}  "
        f"recall@{k} {scores.recall:.5f}  over {scores.queries} queries"
    )


def _contracts() -> list[DataProductContract]:
    return load_contracts(settings.contracts_dir())


def _contract(product: str) -> DataProductContract:
    contracts = {c.name: c for c in _contracts()}
    if product not in contracts:
        raise SystemExit(f"unknown product {product!r}; known: {', '.join(sorted(contracts))}")
    return contracts[product]


def _request(args: argparse.Namespace) -> Any:
    """The caller and the request the query and answer commands share; a caller identity is
    required: the groups to read as, or the separately configured operator view."""
    from mesh_rag_pipelines.retrieval import OPERATOR, Caller
    from mesh_rag_pipelines.retrieval.request import RetrievalRequest

    if not args.group and not args.operator:
        raise SystemExit(
            "a caller identity is required: --group G (repeatable), or --operator with "
            f"{settings.OPERATOR_DATABASE_URL} set"
        )
    return RetrievalRequest(
        query=args.text,
        caller=OPERATOR if args.operator else Caller.of(args.group),
        k=args.k,
        unit="documents" if args.documents else "chunks",
        products=tuple(args.product or ()),
        domains=tuple(args.domain or ()),
        document_types=tuple(args.type or ()),
        tags=tuple(args.tag or ()),
    )


def _reader(operator: bool) -> Any:
    from mesh_rag_pipelines.connections import operator_engine, serving_engine

    try:
        return operator_engine() if operator else serving_engine()
    except RuntimeError as exc:
        raise SystemExit(str(exc)) from exc


def query(args: argparse.Namespace) -> None:
    from mesh_rag_pipelines.retrieval.request import retrieve

    request = _request(args)
    found = retrieve(_reader(args.operator), _contracts(), request)
    if args.json:
        print(
            json.dumps(
                {
                    "query": args.text,
                    "products": found.products,
                    "abstention": found.abstention,
                    "hits": [_hit_json(h) for h in found.hits],
                },
                indent=2,
                default=str,
            )
        )
        return
    print(f"query: {args.text}")
    if found.abstention:
        print(f"  no answer: {found.abstention}")
    for rank, hit in enumerate(found.hits, start=1):
        body = hit.text.split("\n\n", 1)[-1]
        shown = body if args.full else textwrap.shorten(body, 300)
        print(
            f"{rank:>3}. {hit.score:.3f}  {hit.product}/{hit.doc_id} v{hit.doc_version} "
            f"chunk {hit.chunk_no}  [{hit.section or hit.title or ''}]\n"
            + textwrap.indent(textwrap.fill(shown, 96), "       ")
        )


def _hit_json(hit: Any) -> dict[str, Any]:
    return {
        "product": hit.product,
        "doc_id": hit.doc_id,
        "doc_version": hit.doc_version,
        "chunk_no": hit.chunk_no,
        "index_version": hit.index_version,
        "score": round(hit.score, 6),
        "title": hit.title,
        "section": hit.section,
        "text": hit.text,
        "source_updated_at": hit.source_updated_at,
    }


def answer(args: argparse.Namespace) -> None:
    from dataclasses import asdict

    from mesh_rag_pipelines.retrieval.answer import OpenAIChat, answer

    chat = None
    model = os.environ.get(settings.ANSWER_MODEL)
    if model:
        key = os.environ.get(settings.OPENAI_API_KEY)
        if not key:
            raise SystemExit(f"{settings.ANSWER_MODEL} is set: it needs {settings.OPENAI_API_KEY}")
        chat = OpenAIChat(model, key, os.environ.get(settings.OPENAI_BASE_URL))
    result = answer(_reader(args.operator), _contracts(), _request(args), chat)
    if args.json:
        print(json.dumps(asdict(result), indent=2, default=str))
        return
    if result.abstention:
        print(f"no answer: {result.abstention}")
        return
    print(result.text)
    print(f"\n{'answered by ' + result.model if result.model else 'extracted passages'}; sources:")
    for c in result.citations:
        print(f"  [{c.number}] {c.product}/{c.doc_id} ({c.index_version}, chunk {c.chunk_no})")


def forget(product: str, doc_id: str, reason: str | None) -> None:
    """Erase one document from every index version, chunk set, cache entry and state."""
    from mesh_rag_pipelines.connections import store_engine
    from mesh_rag_pipelines.governance.erasure import forget as erase

    done = erase(store_engine(), _contract(product), doc_id, actor=getpass.getuser(), reason=reason)
    print(
        f"{product}/{doc_id} forgotten: {done.index_rows_removed} index rows in "
        f"{len(done.versions)} versions, {done.chunks_removed} chunks, "
        f"{done.cache_entries_removed} cache entries, {done.quarantined_removed} quarantined "
        "records removed; a replay of its change events will not bring it back"
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


def reshard(product: str) -> None:
    """Move a product's stored rows to the shard count its contract now says."""
    from mesh_rag_pipelines.connections import store_engine
    from mesh_rag_pipelines.store.layout import reshard as move

    contract = _contract(product)
    old, documents = move(store_engine(), contract)
    print(f"{product}: {documents} documents moved from {old} to {contract.shards} shards")


def products(as_json: bool) -> None:
    """The platform view: every product's domain, owner, SLA, live index version, and whether
    its index reflects its source now (changes waiting in the source count)."""
    from mesh_rag_pipelines.connections import s3_client, store_engine
    from mesh_rag_pipelines.pipeline import SourceAccess, source_lag
    from mesh_rag_pipelines.store.index_versions import live_versions

    engine = store_engine()
    contracts = _contracts()
    landing = any(contract.source.kind == "s3_landing" for contract in contracts)
    access = SourceAccess(engine, s3_client() if landing else None)
    live = {version.product: version.id for version in live_versions(engine)}
    rows = []
    for contract in contracts:
        lag = source_lag(contract, access)
        rows.append(
            {
                "product": contract.name,
                "domain": contract.domain,
                "owner": contract.owner,
                "sla": contract.freshness.sla,
                "live_version": live.get(contract.name),
                "in_sync": lag.in_sync,
                "waiting_changes": lag.waiting_changes,
                "unindexed_documents": lag.unindexed_documents,
                "oldest_change": lag.oldest_change,
                "shards_behind": list(lag.shards),
            }
        )
    if as_json:
        print(json.dumps(rows, indent=2, default=str))
        return
    for row in rows:
        state = (
            "in sync"
            if row["in_sync"]
            else f"{row['waiting_changes']} changes waiting, {row['unindexed_documents']} "
            f"documents not served (shards {row['shards_behind']}, oldest {row['oldest_change']})"
        )
        print(
            f"{row['domain']}/{row['product']}  owner {row['owner']}  SLA {row['sla']}  "
            f"live {row['live_version'] or 'none'}  {state}"
        )


def ui(port: int) -> None:
    """The Dagster UI and daemon on the local instance, one code location per domain."""
    _use_local_dagster_home()
    dagster = Path(sys.executable).parent / "dagster"
    command = [str(dagster), "dev", "-w", str(REPO_ROOT / "workspace.yaml"), "-p", str(port)]
    print(f"Dagster UI on http://127.0.0.1:{port} (instance {os.environ['DAGSTER_HOME']})")
    # Its own process group, stopped as a whole: `dagster dev` leaves its children otherwise.
    process = subprocess.Popen(command, cwd=REPO_ROOT, start_new_session=True)
    try:
        process.wait()
    except KeyboardInterrupt:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def demo() -> None:
    """Seed the sample sources, build every product, query, and say how to open the UI."""
    started = time.perf_counter()
    seed()
    build()
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
    for name, help_text in (
        ("query", "search the live indexes as a caller"),
        ("answer", "a grounded answer with citations, as a caller"),
    ):
        reader = commands.add_parser(name, help=help_text)
        reader.add_argument("text")
        reader.add_argument("--group", action="append", help="the caller's ACL group (repeatable)")
        reader.add_argument(
            "--operator",
            action="store_true",
            help=f"unfiltered view, through {settings.OPERATOR_DATABASE_URL}",
        )
        reader.add_argument("--product", action="append")
        reader.add_argument("--domain", action="append")
        reader.add_argument("--type", action="append", help="document type")
        reader.add_argument("--tag", action="append")
        reader.add_argument("-k", type=int, default=5 if name == "answer" else 10)
        reader.add_argument("--documents", action="store_true", help="k counts documents")
        reader.add_argument("--json", action="store_true")
        reader.add_argument("--full", action="store_true", help="whole passages")
    forget_cmd = commands.add_parser("forget", help="erase a document (right to be forgotten)")
    forget_cmd.add_argument("--product", required=True)
    forget_cmd.add_argument("--id", required=True, dest="doc_id")
    forget_cmd.add_argument("--reason")
    quarantine_cmd = commands.add_parser(
        "quarantine", help="list quarantined records, or read a product's again once fixed"
    )
    quarantine_cmd.add_argument("action", choices=["list", "redrive"])
    quarantine_cmd.add_argument("--product", action="append")
    quarantine_cmd.add_argument("--source", help="only the records of this file or table")
    release_cmd = commands.add_parser(
        "release", help="index versions of a product: status, validate, swap, rollback, retire"
    )
    release_cmd.add_argument("action", choices=["status", "validate", "swap", "rollback", "retire"])
    release_cmd.add_argument("--product", required=True)
    release_cmd.add_argument("--version", help="index version id (default: the contract's)")
    release_cmd.add_argument("--force", action="store_true", help="swap past a failed gate")
    release_cmd.add_argument("--reason", help="why; required with --force, always recorded")
    eval_cmd = commands.add_parser("eval", help="nDCG@10 and recall@k on BEIR judgments")
    eval_cmd.add_argument("--product", required=True)
    eval_cmd.add_argument("--queries", required=True, type=Path, help="BEIR queries.jsonl")
    eval_cmd.add_argument("--qrels", required=True, type=Path, help="BEIR qrels TSV")
    eval_cmd.add_argument("--version", help="index version id (default: the live one)")
    eval_cmd.add_argument("-k", type=int, default=100, help="recall depth, in documents")
    reshard_cmd = commands.add_parser(
        "reshard", help="move a product's rows to the shard count of its contract"
    )
    reshard_cmd.add_argument("--product", required=True)
    products_cmd = commands.add_parser(
        "products", help="every product: owner, SLA, live index version, in sync or not"
    )
    products_cmd.add_argument("--json", action="store_true")
    ui_cmd = commands.add_parser("ui", help="the Dagster UI and daemon, one location per domain")
    ui_cmd.add_argument("--port", type=int, default=3000)
    services_cmd = commands.add_parser("services", help="embedded PostgreSQL and local S3")
    services_cmd.add_argument("action", choices=["start", "stop"])
    args = parser.parse_args(argv)
    try:
        _run(args)
    except settings.MissingSetting as exc:
        raise SystemExit(f"mesh-rag {args.command}: {exc}") from None


def _run(args: argparse.Namespace) -> None:
    if args.command == "demo":
        demo()
    elif args.command == "build":
        build(args.product)
    elif args.command == "seed":
        seed()
    elif args.command == "check":
        check(args.directory)
    elif args.command == "query":
        query(args)
    elif args.command == "answer":
        answer(args)
    elif args.command == "forget":
        forget(args.product, args.doc_id, args.reason)
    elif args.command == "quarantine":
        quarantine(args.action, args.product, args.source)
    elif args.command == "release":
        release(args.action, args.product, args.version, args.force, args.reason)
    elif args.command == "eval":
        evaluate(args.product, args.queries, args.qrels, args.version, args.k)
    elif args.command == "reshard":
        reshard(args.product)
    elif args.command == "products":
        products(args.json)
    elif args.command == "ui":
        ui(args.port)
    elif args.command == "services":
        services(args.action)


if __name__ == "__main__":
    main(sys.argv[1:])
