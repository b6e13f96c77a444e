"""Data-product contracts: one YAML file per product, loaded into typed models.

The names below load on first use, so that the modules the contract model itself is built from
(source kinds, PII masking, access control) may import `contracts.fields` without importing the
model: no import circle."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_HOMES = {
    "ContractError": "loader",
    "ContractErrors": "loader",
    "check_contracts": "loader",
    "load_contract": "loader",
    "load_contracts": "loader",
    "ChunkingSpec": "model",
    "DataProductContract": "model",
    "EmbeddingSpec": "model",
    "GoldenQuery": "model",
    "SourceSpec": "model",
}

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


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
