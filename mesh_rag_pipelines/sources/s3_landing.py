"""An S3 landing zone of change files, read through boto3 from any S3-compatible endpoint.

Object keys may hold PII (`support_tickets/export-jane.doe@example.com.jsonl`). The store keeps
an object's key only as `ledger_key` makes it: the key itself, or the key masked
(`support_tickets/<EMAIL_ADDRESS>.jsonl`) if it holds any PII type the masker knows but URL;
the landing ledger and quarantine references both use that form. The ledger needs only an
object's identity, and (ledger key, etag) is enough: two objects whose keys mask alike and whose
etags are equal hold the same bytes, so having applied one is having applied the other.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from botocore.exceptions import ClientError
from pydantic import Field, model_validator

from mesh_rag_pipelines.contracts.fields import FieldProblem
from mesh_rag_pipelines.governance.pii import masked_object_key
from mesh_rag_pipelines.sources.base import (
    RedriveReset,
    Refusal,
    ShardState,
    ShardVersion,
    SourceContext,
    SourceKind,
    VersionDigest,
)
from mesh_rag_pipelines.sources.batch import SourceRead
from mesh_rag_pipelines.sources.change_events import parse_change_file
from mesh_rag_pipelines.sources.documents import DocumentChange, quarantine_shard

if TYPE_CHECKING:
    from mesh_rag_pipelines.contracts import DataProductContract
    from mesh_rag_pipelines.governance.policy import PlatformPolicy
    from mesh_rag_pipelines.sources.landing_cursor import LandingCursor


@dataclass(frozen=True)
class LandedObject:
    key: str
    etag: str
    last_modified: datetime


def ledger_key(key: str) -> str:
    """An object key as the landing ledger and quarantine references keep it."""
    return masked_object_key(key)


class AppliedObjects(frozenset[tuple[str, str]]):
    """The (ledger key, etag) pairs a shard has applied; asks about an object by its own key:
    `(key, etag) in applied` looks for the key as the ledger keeps it (and, for rows recorded
    before keys were masked, as it is)."""

    def __contains__(self, pair: object) -> bool:
        if super().__contains__(pair):
            return True
        if not (isinstance(pair, tuple) and len(pair) == 2 and isinstance(pair[0], str)):
            return False
        return super().__contains__((ledger_key(pair[0]), pair[1]))


def list_landed_objects(
    s3: Any, bucket: str, prefix: str, page_size: int = 1000
) -> Iterator[LandedObject]:
    """Every object under the prefix, across all listing pages."""
    paginator = s3.get_paginator("list_objects_v2")
    pages = paginator.paginate(
        Bucket=bucket, Prefix=prefix, PaginationConfig={"PageSize": page_size}
    )
    for page in pages:
        for item in page.get("Contents", []):
            yield LandedObject(item["Key"], item["ETag"].strip('"'), item["LastModified"])


def ensure_bucket(s3: Any, bucket: str) -> None:
    names = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    if bucket not in names:
        s3.create_bucket(Bucket=bucket)


def read_object(s3: Any, bucket: str, key: str) -> bytes | None:
    """The object's body; None if it was deleted since the listing."""
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "NoSuchKey":
            return None
        raise
    return bytes(body)


def shards_touched(
    contract: DataProductContract, s3: Any, objects: list[LandedObject]
) -> dict[int, list[LandedObject]]:
    """Shard -> the objects carrying events of its documents, read and parsed as a run would.

    An object with a line to quarantine also goes to QUARANTINE_SHARD, whose runs record it; an
    empty or deleted object touches no shard.
    """
    source: S3LandingSource = contract.source  # type: ignore[assignment]
    touched: dict[int, list[LandedObject]] = {}
    for landed in objects:
        body = read_object(s3, source.bucket, landed.key)
        if body is None:
            continue
        ref = f"s3://{source.bucket}/{ledger_key(landed.key)}"
        shards = {
            contract.shard_of(p.doc_id)
            if isinstance(p, DocumentChange)
            else quarantine_shard(contract, p)
            for p in parse_change_file(contract, ref, body)
        }
        for shard in sorted(shards):
            touched.setdefault(shard, []).append(landed)
    return dict(sorted(touched.items()))


class S3LandingSource(SourceKind):
    """`kind: s3_landing`: change files under a bucket's prefix, in the project's JSON Lines,
    Debezium JSON, or AWS DMS CSV (`dms_columns` name the CSV's columns after `Op`)."""

    kind: Literal["s3_landing"] = "s3_landing"
    bucket: str = Field(min_length=1)
    prefix: str = Field(min_length=1)
    format: Literal["jsonl", "debezium", "dms_csv"] = "jsonl"
    dms_columns: list[str] = []

    dagster_kind: ClassVar[str] = "s3"
    polled: ClassVar[bool] = False
    needs_s3: ClassVar[bool] = True
    refs_are_ids: ClassVar[bool] = False
    main_field: ClassVar[str] = "source.bucket"

    @model_validator(mode="after")
    def _columns_for_csv(self) -> S3LandingSource:
        if self.format == "dms_csv" and not self.dms_columns:
            raise FieldProblem(
                "dms_columns", "source format 'dms_csv' requires 'source.dms_columns'"
            )
        return self

    @property
    def record_fields(self) -> tuple[str, ...]:
        return tuple(self.dms_columns)

    def where(self, contract: DataProductContract) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def read(
        self, contract: DataProductContract, shard: int, state: ShardState, ctx: SourceContext
    ) -> SourceRead:
        """Events of this shard from objects not yet applied to it (`state.applied`: key and
        etag pairs, as the ledger gives them).

        An object rewritten under the same key has a new etag and is read again; replaying
        events is harmless because the version guard drops anything not newer than the stored
        state. An object removed between listing and reading is skipped, not recorded: if it
        comes back, it is read. The run reads whole objects, so it also settles the shards an
        object holds nothing for: they are recorded as having applied it, and nothing waits for
        their runs. Objects are recorded, and named in quarantine, by their ledger key.
        """
        result = SourceRead()
        for landed in list_landed_objects(ctx.s3, self.bucket, self.prefix):
            stored = ledger_key(landed.key)
            if {(stored, landed.etag), (landed.key, landed.etag)} & state.applied:
                continue
            body = read_object(ctx.s3, self.bucket, landed.key)
            if body is None:
                continue
            touched = set()
            for parsed in parse_change_file(contract, f"s3://{self.bucket}/{stored}", body):
                owner = (
                    contract.shard_of(parsed.doc_id)
                    if isinstance(parsed, DocumentChange)
                    else quarantine_shard(contract, parsed)
                )
                touched.add(owner)
                if owner != shard:
                    continue
                if isinstance(parsed, DocumentChange):
                    result.changes.append(parsed)
                else:
                    result.quarantined.append(parsed)
            settled = [s for s in range(contract.shards) if s == shard or s not in touched]
            result.landed_objects += [(s, stored, landed.etag) for s in settled]
        return result

    def observe(
        self, contract: DataProductContract, ctx: SourceContext, states: Mapping[int, ShardState]
    ) -> dict[int, ShardVersion]:
        """A landing zone has events, not a state: a shard's version is the objects it has
        applied (new objects are reported as they land, see `pending_objects`)."""
        versions = {}
        for shard in range(contract.shards):
            digest = VersionDigest()
            for key, etag in states[shard].applied:
                digest.add(f"{key}\t{etag}")
            versions[shard] = digest.version()
        return versions

    def pending_objects(
        self,
        contract: DataProductContract,
        ctx: SourceContext,
        cursor: LandingCursor,
        applied: Mapping[int, AbstractSet[tuple[str, str]]],
        *,
        page_size: int = 1000,
        limit: int | None = None,
    ) -> tuple[dict[int, list[LandedObject]], LandingCursor]:
        """Objects new since the cursor, by the shards that have not applied them yet, and the
        cursor that records them.

        Objects every shard has already applied (a run read them before this call saw them) are
        recorded without being read; at most `limit` others are read, oldest first, and the rest
        are left for the next call.
        """
        from mesh_rag_pipelines.sources.landing_cursor import advance, unseen

        listing = list(list_landed_objects(ctx.s3, self.bucket, self.prefix, page_size))
        fresh = unseen(listing, cursor)
        settled = [o for o in fresh if all((o.key, o.etag) in applied[s] for s in applied)]
        settled_set = set(settled)
        to_read = [o for o in fresh if o not in settled_set][:limit]
        pending = {
            shard: [o for o in objects if (o.key, o.etag) not in applied[shard]]
            for shard, objects in shards_touched(contract, ctx.s3, to_read).items()
        }
        by_shard = {shard: objects for shard, objects in pending.items() if objects}
        return by_shard, advance(cursor, listing, settled + to_read)

    def redrive(self, refs: AbstractSet[str]) -> RedriveReset:
        """The ledger forgets the objects of the quarantined records: the next runs read them."""
        prefix = f"s3://{self.bucket}/"
        keys = sorted(ref.removeprefix(prefix) for ref in refs if ref.startswith(prefix))
        return RedriveReset(object_keys=tuple(keys))

    def seed_into(self, contract: DataProductContract, ctx: SourceContext, data: Path) -> str:
        """Upload the sample change files not there yet (a folder of them)."""
        ensure_bucket(ctx.s3, self.bucket)
        existing = {o.key for o in list_landed_objects(ctx.s3, self.bucket, self.prefix)}
        files = events = 0
        for path in sorted(data.iterdir()):
            key = f"{self.prefix}{path.name}"
            if key not in existing:
                body = path.read_bytes()
                ctx.s3.put_object(Bucket=self.bucket, Key=key, Body=body)
                files += 1
                events += sum(1 for line in body.splitlines() if line.strip())
        return f"{files} change files ({events} events) uploaded to {self.where(contract)}"

    def preflight(self, contract: DataProductContract, ctx: SourceContext) -> None:
        """The landing prefix can be listed."""
        ctx.s3.list_objects_v2(Bucket=self.bucket, Prefix=self.prefix, MaxKeys=1)

    def refusal(self, contract: DataProductContract, policy: PlatformPolicy) -> Refusal | None:
        grant = policy.domains.get(contract.domain)
        entries = grant.buckets if grant else []
        granted = [f"s3://{entry.bucket}/{p}" for entry in entries for p in entry.prefixes]
        prefixes = [p for entry in entries if entry.bucket == self.bucket for p in entry.prefixes]
        if not prefixes:
            return (
                "source.bucket",
                f"bucket {self.bucket} is not one {policy.label(contract.domain)} grants: "
                f"{granted}",
            )
        if not any(self.prefix.startswith(granted_prefix) for granted_prefix in prefixes):
            return (
                "source.prefix",
                f"s3://{self.bucket}/{self.prefix} is outside the landing prefixes "
                f"{policy.label(contract.domain)} grants: {granted}",
            )
        return None

    def landing_claim(self) -> tuple[str, str] | None:
        return self.bucket, self.prefix
