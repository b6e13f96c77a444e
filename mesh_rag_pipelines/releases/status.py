"""Where a product's releases stand: its versions with their coverage, the candidate, the
rollback target and the history, for the CLI and the Dagster UI."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.releases.lifecycle import rollback_target
from mesh_rag_pipelines.store.health import index_health
from mesh_rag_pipelines.store.index_versions import (
    get_version,
    index_version_id,
    live_versions,
    product_versions,
    release_history,
)
from mesh_rag_pipelines.store.schema import IndexVersion, ReleaseEvent

HISTORY_SHOWN = 15


@dataclass(frozen=True)
class VersionStatus:
    version: IndexVersion
    live_documents: int
    indexed: int

    @property
    def coverage(self) -> float:
        return self.indexed / self.live_documents if self.live_documents else 1.0


@dataclass(frozen=True)
class ReleaseStatus:
    product: str
    live: str | None
    candidate: str | None
    rollback_target: str | None
    versions: list[VersionStatus]
    history: list[ReleaseEvent]

    def versions_markdown(self) -> str:
        rows = [
            f"| {s.version.id} | {s.version.status} | {s.version.chunker} | "
            f"{s.version.model_id} | {s.indexed}/{s.live_documents} ({s.coverage:.0%}) | "
            f"{'yes' if s.version.index_built_at else 'no'} | "
            f"{s.version.created_at:%Y-%m-%d %H:%M} |"
            for s in self.versions
        ]
        header = "| version | status | chunker | model | documents | HNSW | created |"
        return "\n".join([header, "|---|---|---|---|---|---|---|", *rows])

    def history_markdown(self) -> str:
        rows = [
            f"| {e.at:%Y-%m-%d %H:%M:%S} | {e.action}{' (forced)' if e.forced else ''} | "
            f"{e.version} | {e.previous_version or ''} | {e.actor} | {e.reason or ''} |"
            for e in self.history[-HISTORY_SHOWN:]
        ]
        header = "| when | action | version | previous | who | why |"
        return "\n".join([header, "|---|---|---|---|---|---|", *rows])


def _version_status(engine: Engine, version: IndexVersion) -> VersionStatus:
    health = index_health(engine, version.product, version=version)
    assert health is not None
    return VersionStatus(version, health.live_documents, health.indexed_current)


def candidate_of(engine: Engine, contract: DataProductContract) -> VersionStatus | None:
    """The contract's version while it is not live: the release in progress."""
    version = get_version(engine, index_version_id(contract))
    if version is None or version.status in ("live", "retired"):
        return None
    return _version_status(engine, version)


def release_status(engine: Engine, contract: DataProductContract) -> ReleaseStatus:
    with engine.connect() as conn:
        versions = product_versions(conn, contract.name)
        target = rollback_target(conn, contract.name)
    live = next(iter(live_versions(engine, [contract.name])), None)
    candidate = candidate_of(engine, contract)
    return ReleaseStatus(
        product=contract.name,
        live=live.id if live else None,
        candidate=candidate.version.id if candidate else None,
        rollback_target=target,
        versions=[_version_status(engine, v) for v in versions],
        history=release_history(engine, contract.name),
    )
