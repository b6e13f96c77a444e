"""Index releases: a new chunker, model or index parameters become a new index version, built
beside the live one, validated against it, swapped in one transaction, rolled back or retired."""

from mesh_rag_pipelines.releases.lifecycle import (
    ReleaseError,
    SwapResult,
    drop_retired,
    retire,
    rollback,
    rollback_target,
    swap,
)
from mesh_rag_pipelines.releases.validation import ValidationReport, validate_version

__all__ = [
    "ReleaseError",
    "SwapResult",
    "ValidationReport",
    "drop_retired",
    "retire",
    "rollback",
    "rollback_target",
    "swap",
    "validate_version",
]
