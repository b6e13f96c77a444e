"""Before the first run: will each contract's run find what it needs? `mesh-rag check
--preflight` asks every service a valid contract depends on, once, and names what is missing:
an unset variable, a database or table that does not answer, a folder that is not there, a
bucket that cannot be listed, an embedding endpoint that refuses. A contract can be valid and
still be bound to fail at run time; this is where that shows, before a backfill starts.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from mesh_rag_pipelines import settings
from mesh_rag_pipelines.contracts import DataProductContract


@dataclass(frozen=True)
class Finding:
    """One thing a product needs, and what is wrong with it (None: it answered)."""

    product: str
    need: str
    problem: str | None = None


def _probe(product: str, need: str, probe: Callable[[], None]) -> Finding:
    try:
        probe()
    except Exception as exc:  # noqa: BLE001 - whatever refuses, the finding says what and why
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return Finding(product, need, f"{type(exc).__name__}: {message}")
    return Finding(product, need)


def preflight(contracts: list[DataProductContract]) -> list[Finding]:
    """Every need of every contract, the store's first."""
    from mesh_rag_pipelines.connections import store_engine

    findings = [_probe("(platform)", "the store (MESH_RAG_DATABASE_URL)", _connects(store_engine))]
    for contract in contracts:
        findings += _source_findings(contract)
        findings.append(_embedding_finding(contract))
        if "hash" in contract.pii_masking.values() and not settings.pii_hash_key():
            problem = f"pii_masking uses 'hash': set {settings.PII_HASH_KEY}"
            findings.append(Finding(contract.name, "the PII hash key", problem))
    return findings


def _connects(engine_of: Callable[[], object]) -> Callable[[], None]:
    def probe() -> None:
        engine = engine_of()
        with engine.connect():  # type: ignore[attr-defined]
            pass

    return probe


def _source_findings(contract: DataProductContract) -> list[Finding]:
    from mesh_rag_pipelines.connections import source_access
    from mesh_rag_pipelines.sources import files, postgres_table, s3_landing

    kind, name = contract.source.kind, contract.name
    if kind == "files":
        return [_probe(name, f"folder {contract.source.path}", lambda: files.preflight(contract))]
    if kind == "postgres_table":
        where = f"table {contract.source.table}"
        env = contract.source.database_url_env
        if env and not os.environ.get(env):
            return [Finding(name, where, f"source.database_url_env {env} is not set")]

        def table() -> None:
            postgres_table.preflight(contract, source_access(contract).table_engine(contract))

        return [_probe(name, where, table)]
    where = f"s3://{contract.source.bucket}/{contract.source.prefix}"
    return [_probe(name, where, lambda: s3_landing.preflight(contract, source_access(contract).s3))]


def _embedding_finding(contract: DataProductContract) -> Finding:
    """An API model is asked for one vector of the contract's dimension; a local one is
    installed with the package and its dimension checked with the contract."""
    spec = contract.embedding
    need = f"embedding model {spec.model_id}"
    if spec.provider == "local":
        return Finding(contract.name, need)

    def embed() -> None:
        from mesh_rag_pipelines.embedding import embedder_for
        from mesh_rag_pipelines.embedding.embedder import embed_checked

        embed_checked(embedder_for(spec), ["preflight"], contract.name)

    return _probe(contract.name, need, embed)
