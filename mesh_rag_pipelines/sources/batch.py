"""What one read of a source returns for one shard."""

from __future__ import annotations

from dataclasses import dataclass, field

from mesh_rag_pipelines.sources.documents import DocumentChange, QuarantineEntry


@dataclass
class SourceRead:
    """Changes for one shard, plus the progress markers to commit with them.

    `cursors` (named watermarks) and `landed_objects` (landing-zone keys and etags) are written in
    the same transaction as the changes, so a crash re-reads rather than skips.
    """

    changes: list[DocumentChange] = field(default_factory=list)
    unchanged: int = 0
    quarantined: list[QuarantineEntry] = field(default_factory=list)
    cursors: dict[str, str] = field(default_factory=dict)
    landed_objects: list[tuple[str, str]] = field(default_factory=list)
