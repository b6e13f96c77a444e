"""Index releases in Dagster: a release asset per product that validates a complete candidate
against the live version (a blocking gate check, a blue-vs-green report in its metadata, an
automatic swap where the contract opts in), and a job to swap, roll back or retire from the
Launchpad."""

from typing import Any, Literal

import dagster as dg
from sqlalchemy import Engine

from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.contracts.model import parse_duration
from mesh_rag_pipelines.governance.pii import query_masker
from mesh_rag_pipelines.orchestration.assets import common_attributes, embeddings_key
from mesh_rag_pipelines.orchestration.checks import health_verdict
from mesh_rag_pipelines.orchestration.conditions import VERDICT_CONDITION
from mesh_rag_pipelines.orchestration.resources import EmbeddingModels, IndexStore
from mesh_rag_pipelines.releases import (
    drop_retired,
    retire,
    rollback,
    swap,
    validate_version,
)
from mesh_rag_pipelines.releases.status import candidate_of, release_status
from mesh_rag_pipelines.releases.validation import GOLDEN_K
from mesh_rag_pipelines.retrieval import Caller, search
from mesh_rag_pipelines.store.health import index_health
from mesh_rag_pipelines.store.index_versions import get_version, index_version_id, live_versions


def release_key(contract: DataProductContract) -> dg.AssetKey:
    return dg.AssetKey([contract.name, "release"])


def release_job_name(contract: DataProductContract) -> str:
    return f"release_{contract.name}"


def release_asset(contract: DataProductContract) -> dg.AssetsDefinition:
    @dg.asset(
        key=release_key(contract),
        deps=[embeddings_key(contract)],
        kinds={"pgvector"},
        automation_condition=VERDICT_CONDITION,
        code_version=index_version_id(contract),
        description=(
            f"The product-wide verdict on {contract.name}'s index (every shard against its "
            "source, golden queries), and its releases: once a candidate version (a new "
            "chunker, model or index parameters) holds every document, it is validated against "
            "the live "
            "version; the report is attached here. "
            + ("A candidate that passes goes live." if contract.release.auto_swap else "")
        ),
        **common_attributes(contract),
    )
    def _release(
        context: dg.AssetExecutionContext,
        index_store: IndexStore,
        embedding_models: EmbeddingModels,
    ) -> dg.MaterializeResult:
        engine = index_store.engine
        actor = context.run.tags.get("dagster/user", "dagster")
        metadata: dict[str, Any] = {}
        candidate = candidate_of(engine, contract)
        if candidate is None:
            context.log.info(f"{contract.name}: no candidate version; nothing to validate")
        elif candidate.coverage < contract.release.min_coverage:
            context.log.info(
                f"{contract.name}: candidate {candidate.version.id} holds "
                f"{candidate.coverage:.1%} of the documents; backfill every shard first"
            )
        elif candidate.version.status == "building":
            report = validate_version(
                engine, contract, candidate.version.id, embedding_models.for_spec, actor=actor
            )
            context.log.info(f"{contract.name}: candidate {candidate.version.id}: {report.passed}")
            metadata["report"] = dg.MetadataValue.md(report.markdown())
            if report.passed and contract.release.auto_swap:
                swapped = swap(engine, contract.name, candidate.version.id, actor="auto-swap")
                metadata["swap_seconds"] = round(swapped.seconds, 4)
        retention = parse_duration(contract.release.retain_retired)
        dropped = drop_retired(engine, contract.name, retention, actor=actor)
        metadata["dropped_versions"] = ", ".join(dropped)
        return dg.MaterializeResult(metadata={**metadata, **status_metadata(engine, contract)})

    return _release


def status_metadata(engine: Engine, contract: DataProductContract) -> dict[str, Any]:
    """The product's versions as the release asset shows them: whatever changed them (a
    validation, a swap from the Launchpad) records them anew."""
    status = release_status(engine, contract)
    return {
        "live_version": status.live or "",
        "candidate_version": status.candidate or "",
        "versions": dg.MetadataValue.md(status.versions_markdown()),
        "history": dg.MetadataValue.md(status.history_markdown()),
    }


def release_checks(contract: DataProductContract) -> list[dg.AssetChecksDefinition]:
    """The release gate, the whole index against its source, and the golden queries."""
    checks = [release_gate(contract), whole_index_check(contract)]
    if contract.golden_queries:
        checks.append(golden_queries_check(contract))
    return checks


def whole_index_check(contract: DataProductContract) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=release_key(contract),
        name="index_matches_source",
        description=(
            "The invariant over every shard of the live index: every live document indexed at "
            "its current version with its current ACL, no ghost rows, one row per chunk."
        ),
    )
    def _whole(index_store: IndexStore) -> dg.AssetCheckResult:
        return health_verdict(index_health(index_store.engine, contract.name), "all")

    return _whole


def golden_queries_check(contract: DataProductContract) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=release_key(contract),
        name="golden_queries",
        description=(
            f"Each golden query finds its document in the top {GOLDEN_K}. A miss is named by "
            "its position in the contract's golden_queries (from 0) and the query as it was "
            "searched, masked like any query."
        ),
    )
    def _golden(index_store: IndexStore, embedding_models: EmbeddingModels) -> dg.AssetCheckResult:
        embedders = {
            version.model_id: embedding_models.for_spec(version.embedding_spec)
            for version in live_versions(index_store.engine, [contract.name])
        }
        # The check's metadata is kept in Dagster's event log: never a query verbatim.
        masker = query_masker([contract])
        misses: list[tuple[int, str]] = []
        for number, golden in enumerate(contract.golden_queries):
            hits = search(
                index_store.engine,
                [contract],
                golden.query,
                Caller.of_product(contract),
                k=GOLDEN_K,
                unit="documents",
                embedders=embedders,
            )
            if not {h.doc_id for h in hits} & set(golden.expected_document_ids):
                misses.append((number, masker.text(golden.query)))
        total = len(contract.golden_queries)
        return dg.AssetCheckResult(
            passed=not misses,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "hit_rate": round((total - len(misses)) / total, 3),
                "missed": [number for number, _ in misses],
                "misses": "; ".join(f"#{number}: {query}" for number, query in misses),
            },
        )

    return _golden


def release_gate(contract: DataProductContract) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=release_key(contract),
        name="release_gate",
        blocking=True,
        description=(
            "The contract's candidate version, once validated, passed the gate: coverage, "
            "structure and quality within the contract's release thresholds."
        ),
    )
    def _gate(index_store: IndexStore) -> dg.AssetCheckResult:
        version = get_version(index_store.engine, index_version_id(contract))
        status = version.status if version else "unregistered"
        failed = status == "failed"
        return dg.AssetCheckResult(
            passed=not failed,
            metadata={
                "version": index_version_id(contract),
                "status": status,
                "metrics": version.metrics if version else {},
            },
        )

    return _gate


class ReleaseAction(dg.Config):
    """What to do to a product's index versions; `version` defaults to the contract's."""

    action: Literal["swap", "rollback", "retire"]
    version: str = ""
    force: bool = False
    reason: str = ""


def release_job(contract: DataProductContract) -> dg.JobDefinition:
    @dg.op(name=f"{contract.name}_release_action")
    def _act(
        context: dg.OpExecutionContext, config: ReleaseAction, index_store: IndexStore
    ) -> None:
        engine = index_store.engine
        actor = context.run.tags.get("dagster/user", "dagster")
        version = config.version or index_version_id(contract)
        reason = config.reason or None
        if config.action == "swap":
            result = swap(
                engine, contract.name, version, actor=actor, force=config.force, reason=reason
            )
            context.log.info(f"{contract.name}: {result.live} live (was {result.previous})")
        elif config.action == "rollback":
            result = rollback(engine, contract.name, actor=actor, reason=reason)
            context.log.info(f"{contract.name}: rolled back to {result.live}")
        else:
            retire(engine, contract.name, version, actor=actor, reason=reason)
            context.log.info(f"{contract.name}: {version} retired")
        context.log_event(
            dg.AssetMaterialization(
                release_key(contract), metadata=status_metadata(engine, contract)
            )
        )

    @dg.job(
        name=release_job_name(contract),
        description=(
            f"Swap, roll back or retire index versions of {contract.name} (Launchpad config: "
            "action, version, force, reason)."
        ),
        tags={"domain": contract.domain},
    )
    def _job() -> None:
        _act()

    return _job
