"""Data-product contracts: one YAML file per product, loaded into typed models."""

from mesh_rag_pipelines.contracts.loader import (
    ContractError,
    ContractErrors,
    check_contracts,
    load_contract,
    load_contracts,
)
from mesh_rag_pipelines.contracts.model import (
    ChunkingSpec,
    DataProductContract,
    EmbeddingSpec,
    GoldenQuery,
    SourceSpec,
)

__all__ = [
    "ChunkingSpec",
    "ContractError",
    "ContractErrors",
    "DataProductContract",
    "EmbeddingSpec",
    "GoldenQuery",
    "SourceSpec",
    "check_contracts",
    "load_contract",
    "load_contracts",
]
