"""Which landing-zone objects are new since the last look, and which shards their events touch.

S3 lists in key order, LastModified has one-second resolution, and it is stamped when an upload
starts, not when the object becomes visible. So "newer than the newest seen" misses objects
written in the same second as it, and objects whose upload finished after a newer one's.

The cursor keeps a floor and every object (key, etag) seen at or above it. An object is new when
its LastModified is at or above the floor and it is not among the seen. The floor trails the
newest LastModified by a look-back window and never falls; seen entries below it are dropped, so
the cursor stays small and no object is reported twice. An object that becomes visible more than
the look-back window after its LastModified is not reported; it is not lost either, because a
run of a shard reads every object missing from that shard's ledger.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from mesh_rag_pipelines.sources.s3_landing import LandedObject

if TYPE_CHECKING:
    pass

LOOKBACK = timedelta(minutes=15)


@dataclass(frozen=True)
class LandingCursor:
    """`floor`: no object below it is reported; `seen`: key -> (etag, LastModified) at or above."""

    floor: datetime | None = None
    seen: Mapping[str, tuple[str, datetime]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "floor": self.floor.isoformat() if self.floor else None,
            "seen": {key: [etag, at.isoformat()] for key, (etag, at) in self.seen.items()},
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> LandingCursor:
        return cls(
            floor=datetime.fromisoformat(raw["floor"]) if raw["floor"] else None,
            seen={
                key: (etag, datetime.fromisoformat(at)) for key, (etag, at) in raw["seen"].items()
            },
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> LandingCursor:
        return cls.from_dict(json.loads(text)) if text else cls()


def _is_unseen(landed: LandedObject, cursor: LandingCursor) -> bool:
    if cursor.floor is not None and landed.last_modified < cursor.floor:
        return False
    seen = cursor.seen.get(landed.key)
    return seen is None or seen[0] != landed.etag


def unseen(listing: Iterable[LandedObject], cursor: LandingCursor) -> list[LandedObject]:
    """Objects of the listing the cursor has not recorded, oldest first."""
    fresh = (landed for landed in listing if _is_unseen(landed, cursor))
    return sorted(fresh, key=lambda landed: (landed.last_modified, landed.key))


def advance(
    cursor: LandingCursor,
    listing: Sequence[LandedObject],
    reported: Sequence[LandedObject],
    lookback: timedelta = LOOKBACK,
) -> LandingCursor:
    """The cursor after `reported`; unseen objects left out of it stay unseen for the next call."""
    if not listing:
        return cursor
    floor = max(landed.last_modified for landed in listing) - lookback
    reported_ids = {(landed.key, landed.etag) for landed in reported}
    held_back = [o for o in unseen(listing, cursor) if (o.key, o.etag) not in reported_ids]
    if held_back:
        floor = min(floor, held_back[0].last_modified)
    if cursor.floor is not None:
        floor = max(floor, cursor.floor)
    seen = {key: entry for key, entry in cursor.seen.items() if entry[1] >= floor}
    seen.update({o.key: (o.etag, o.last_modified) for o in reported if o.last_modified >= floor})
    return LandingCursor(floor, seen)


def new_objects(
    listing: Iterable[LandedObject],
    cursor: LandingCursor,
    *,
    lookback: timedelta = LOOKBACK,
    limit: int | None = None,
) -> tuple[list[LandedObject], LandingCursor]:
    """At most `limit` objects not reported before, oldest first, and the cursor that records
    them; the rest are reported by the next call."""
    listed = list(listing)
    reported = unseen(listed, cursor)[:limit]
    return reported, advance(cursor, listed, reported, lookback)
