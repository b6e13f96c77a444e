"""Before the first run: will each contract's run find what it needs? `mesh-rag check
--preflight` asks every service a valid contract depends on, once, and names what is missing:
an unset variable, a database or table that does not answer, a folder that is not there, a
bucket that cannot be listed, an embedding endpoint that refuses. A contract can be valid and
still be bound to fail at run time; this is where that shows, before a backfill starts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.settings import DATABASE_URL, PII_HASH_KEY, MissingSetting, Settings


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
        if isinstance(exc, MissingSetting):  # says itself what to set
            return Finding(product, need, message)
        return Finding(product, need, f"{type(exc).__name__}: {message}")
    return Finding(product, need)


def preflight(contracts: list[DataProductContract], settings: Settings) -> list[Finding]:
    """Every need of every contract, the store's first."""
    from mesh_rag_pipelines.connections import source_context, store_engine

    def store() -> None:
        with store_engine(settings).connect():
            pass

    findings = [_probe("(platform)", f"the store ({DATABASE_URL})", store)]
    for contract in contracts:

        def source(contract: DataProductContract = contract) -> None:
            contract.source.preflight(contract, source_context(contract, settings))

        findings.append(_probe(contract.name, contract.source.where(contract), source))
        findings.append(_embedding_finding(contract, settings))
        if "hash" in contract.pii_masking.values() and not settings.pii_hash_key:
            problem = f"pii_masking uses 'hash': set {PII_HASH_KEY}"
            findings.append(Finding(contract.name, "the PII hash key", problem))
    return findings


def _embedding_finding(contract: DataProductContract, settings: Settings) -> Finding:
    """An API model is asked for one vector of the contract's dimension; a local one is
    installed with the package and its dimension checked with the contract."""
    spec = contract.embedding
    need = f"embedding model {spec.model_id}"
    if spec.provider == "local":
        return Finding(contract.name, need)

    def embed() -> None:
        from mesh_rag_pipelines.embedding import embedder_for
        from mesh_rag_pipelines.embedding.embedder import embed_checked

        embed_checked(embedder_for(spec, settings=settings), ["preflight"], contract.name)

    return _probe(contract.name, need, embed)
