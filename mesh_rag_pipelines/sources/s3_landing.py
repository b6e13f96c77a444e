"""An S3 landing zone of change files, read through boto3 from any S3-compatible endpoint.

Object keys may hold PII (`support_tickets/export-jane.doe@example.com.jsonl`). The store keeps
an object's key only as `ledger_key` makes it: the key itself, or the key masked
(`support_tickets/<EMAIL_ADDRESS>.jsonl`) if it holds any PII type the masker knows but URL;
the landing ledger and quarantine references both use that form. The ledger needs only an
object's identity, and (ledger key, etag) is enough: two objects whose keys mask alike and whose
etags are equal hold the same bytes, so having applied one is having applied the other.
"""

from __future__ import annotations

from collections.abc import Iterator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.governance.pii import masked_object_key
from mesh_rag_pipelines.sources.batch import SourceRead
from mesh_rag_pipelines.sources.change_events import parse_change_file
from mesh_rag_pipelines.sources.documents import DocumentChange, quarantine_shard


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


def read_object(s3: Any, bucket: str, key: str) -> bytes | None:
    """The object's body; None if it was deleted since the listing."""
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "NoSuchKey":
            return None
        raise
    return bytes(body)


def read_landing_zone(
    contract: DataProductContract, s3: Any, shard: int, applied: AbstractSet[tuple[str, str]]
) -> SourceRead:
    """Events of this shard from objects not yet applied to it (`applied`: key and etag pairs,
    as `applied_objects` gives them).

    An object rewritten under the same key has a new etag and is read again; replaying events is
    harmless because the version guard drops anything not newer than the stored state. An object
    removed between listing and reading is skipped, not recorded: if it comes back, it is read.
    The run reads whole objects, so it also settles the shards an object holds nothing for: they
    are recorded as having applied it, and nothing waits for their runs. Objects are recorded,
    and named in quarantine, by their ledger key.
    """
    bucket, prefix = contract.source.bucket or "", contract.source.prefix or ""
    result = SourceRead()
    for landed in list_landed_objects(s3, bucket, prefix):
        stored = ledger_key(landed.key)
        if (stored, landed.etag) in applied or (landed.key, landed.etag) in applied:
            continue
        body = read_object(s3, bucket, landed.key)
        if body is None:
            continue
        source_ref = f"s3://{bucket}/{stored}"
        touched = set()
        for parsed in parse_change_file(contract, source_ref, body):
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


def preflight(contract: DataProductContract, s3: Any) -> None:
    """The landing prefix can be listed (raises what is wrong)."""
    s3.list_objects_v2(
        Bucket=contract.source.bucket or "", Prefix=contract.source.prefix or "", MaxKeys=1
    )
