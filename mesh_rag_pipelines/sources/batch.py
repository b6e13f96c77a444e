"""What one read of a source returns for one shard."""

from __future__ import annotations

from dataclasses import dataclass, field

from mesh_rag_pipelines.sources.documents import DocumentChange, QuarantineEntry


@dataclass
class SourceRead:
    """Changes for one shard, plus the progress markers to commit with them.

    `cursors` (named watermarks) and `landed_objects` (shard, landing-zone key and etag: objects
    that shard has nothing left to apply from) are recorded after the changes, so a crash
    re-reads rather than skips.
    """

    changes: list[DocumentChange] = field(default_factory=list)
    unchanged: int = 0
    quarantined: list[QuarantineEntry] = field(default_factory=list)
    cursors: dict[str, str] = field(default_factory=dict)
    landed_objects: list[tuple[int, str, str]] = field(default_factory=list)
    # How the source's shape moved from what the contract (or the last read) describes.
    schema_changes: list[str] = field(default_factory=list)

    @property
    def unexpected_fields(self) -> dict[str, int]:
        """Fields the contract does not map, by how many changes carried them."""
        counts: dict[str, int] = {}
        for change in self.changes:
            for name in change.unexpected_fields:
                counts[name] = counts.get(name, 0) + 1
        return dict(sorted(counts.items()))
