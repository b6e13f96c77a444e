"""Load the seed data shipped with sample products into their sources, through each source
kind's own `seed_into`: the catalog's rows become a real PostgreSQL table, the tickets' change
files real S3 objects, so the samples are read through the same code paths as production ones.
Seeding is idempotent: rows are upserted by id, objects uploaded only when missing.
"""

from __future__ import annotations

from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.sources.base import SourceContext


def seed_sources(contracts: list[DataProductContract], ctx: SourceContext) -> dict[str, str]:
    """Seed every product that ships seed data; returns what was seeded, per product."""
    return {
        contract.name: contract.source.seed_into(
            contract, ctx, contract.resolve_path(contract.source.seed)
        )
        for contract in contracts
        if contract.source.seed
    }
