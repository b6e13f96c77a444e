"""`mesh-rag`: build, query and run the local services from the command line."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from mesh_rag_pipelines.cli.session import Session
from mesh_rag_pipelines.settings import OPERATOR_DATABASE_URL, MissingSetting, Settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mesh-rag", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("demo", help="seed sample sources, build everything, run a sample query")
    build_cmd = commands.add_parser("build", help="build products (every shard)")
    build_cmd.add_argument("--product", action="append")
    commands.add_parser("seed", help="load sample products' seed data into their sources")
    check_cmd = commands.add_parser("check", help="validate every contract, listing all problems")
    check_cmd.add_argument("directory", nargs="?", type=Path)
    check_cmd.add_argument(
        "--preflight",
        action="store_true",
        help="also reach every database, folder, bucket and model the contracts need",
    )
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
            help=f"unfiltered view, through {OPERATOR_DATABASE_URL}",
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
    drop_cmd = commands.add_parser(
        "drop", help="remove everything the store holds for a product given up on"
    )
    drop_cmd.add_argument("--product", required=True)
    drop_cmd.add_argument("--yes", action="store_true", help="really drop it")
    drop_cmd.add_argument("--reason")
    products_cmd = commands.add_parser(
        "products", help="every product: owner, SLA, live index version, in sync or not"
    )
    products_cmd.add_argument("--json", action="store_true")
    ui_cmd = commands.add_parser("ui", help="the Dagster UI and daemon, one location per domain")
    ui_cmd.add_argument("--port", type=int, default=3000)
    serve_cmd = commands.add_parser(
        "serve", help="the retrieval service: an authenticated HTTP API (/v1, /docs)"
    )
    serve_cmd.add_argument("--host", default="127.0.0.1")
    serve_cmd.add_argument("--port", type=int, default=8000)
    keys_cmd = commands.add_parser("keys", help="API keys of services calling the retrieval API")
    keys_cmd.add_argument("action", choices=["create", "list", "revoke"])
    keys_cmd.add_argument("--name", help="who the key is for (create)")
    keys_cmd.add_argument("--group", action="append", help="an ACL group of the key (create)")
    keys_cmd.add_argument("--expires", default="90d", help="lifetime, e.g. 30d (create)")
    keys_cmd.add_argument("--id", dest="key_id", help="the key's id (revoke)")
    feedback_cmd = commands.add_parser(
        "feedback", help="review evaluation queries proposed by callers' negative feedback"
    )
    feedback_cmd.add_argument("action", choices=["list", "accept", "reject"])
    feedback_cmd.add_argument("--product", action="append")
    feedback_cmd.add_argument("--id", dest="candidate_ids", type=int, action="append")
    feedback_cmd.add_argument("--reason", help="why (recorded with the review)")
    feedback_cmd.add_argument(
        "--all", action="store_true", help="list reviewed candidates too (list)"
    )
    services_cmd = commands.add_parser("services", help="embedded PostgreSQL and local S3")
    services_cmd.add_argument("action", choices=["start", "stop"])
    return parser


def main(argv: list[str] | None = None) -> None:
    # Library deprecation and preview notices are for developers, not for the command's output.
    warnings.simplefilter("ignore")
    args = _parser().parse_args(argv)
    try:
        _run(Session(Settings.from_env()), args)
    except MissingSetting as exc:
        raise SystemExit(f"mesh-rag {args.command}: {exc}") from None


def _run(session: Session, args: argparse.Namespace) -> None:
    """Run the command, importing only the module that runs it: a query's seconds are mostly
    imports."""
    command = args.command
    if command in ("demo", "build"):
        from mesh_rag_pipelines.cli import build

        if command == "demo":
            build.demo(session)
        else:
            build.build(session, args.product)
    elif command in ("query", "answer"):
        from mesh_rag_pipelines.cli import reading

        (reading.query if command == "query" else reading.answer)(session, args)
    elif command == "ui":
        from mesh_rag_pipelines.cli import ui

        ui.ui(session, args.port)
    elif command in ("serve", "keys"):
        from mesh_rag_pipelines.cli import service

        if command == "serve":
            service.serve(session, args.host, args.port)
        else:
            service.keys(session, args)
    elif command == "feedback":
        from mesh_rag_pipelines.cli import feedback

        feedback.feedback(session, args)
    else:
        _operation(session, args)


def _operation(session: Session, args: argparse.Namespace) -> None:
    from mesh_rag_pipelines.cli import operations

    if args.command == "seed":
        operations.seed(session)
    elif args.command == "check":
        operations.check(session, args.directory, args.preflight)
    elif args.command == "forget":
        operations.forget(session, args.product, args.doc_id, args.reason)
    elif args.command == "quarantine":
        operations.quarantine(session, args.action, args.product, args.source)
    elif args.command == "release":
        operations.release(
            session, args.action, args.product, args.version, args.force, args.reason
        )
    elif args.command == "eval":
        operations.evaluate(session, args.product, args.queries, args.qrels, args.version, args.k)
    elif args.command == "reshard":
        operations.reshard(session, args.product)
    elif args.command == "drop":
        operations.drop(session, args.product, args.yes, args.reason)
    elif args.command == "products":
        operations.products(session, args.json)
    elif args.command == "services":
        operations.services(session, args.action)


if __name__ == "__main__":
    main(sys.argv[1:])
