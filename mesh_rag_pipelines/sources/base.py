"""What a source kind is: the contract's `source:` section (a pydantic model, one class per kind,
told apart by `kind`), and everything the project does with that kind of source, so that the
rest of the code never asks which kind it has:

- read: one shard's changes since what the store holds (`read`);
- observe: each shard's data version, for the UI's stale badges and for automation (`observe`);
- re-drive: what to read again once a quarantined record's cause is fixed (`redrive`);
- seed: load sample data into the source (`seed_into`);
- describe: where the source is, and its Dagster kind tag (`where`, `dagster_kind`);
- trigger: looked at on a cadence (`polled`) or reported as its events land;
- preflight: reach it before a first run (`preflight`);
- govern: which platform-policy grant covers it (`refusal`), and what landing prefix it claims;
- clients: whether it reads S3 (`needs_s3`), so that no other product starts or asks S3.

Adding a kind is one module with its class, registered in `sources/__init__.py`.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from mesh_rag_pipelines.settings import MissingSetting
from mesh_rag_pipelines.sources.batch import SourceRead
from mesh_rag_pipelines.sources.documents import KnownDocument

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from mesh_rag_pipelines.contracts import DataProductContract
    from mesh_rag_pipelines.governance.policy import PlatformPolicy
    from mesh_rag_pipelines.settings import Settings

# The default bound on one record's text and metadata, in UTF-8 bytes (source.max_record_bytes).
DEFAULT_MAX_RECORD_BYTES = 1_048_576
# (contract field, problem): why the platform policy does not grant a source.
Refusal = tuple[str, str]


@dataclass
class SourceContext:
    """How a read reaches its source: the store's engine (also the database of a table source
    that names none), the settings that name source databases, and an S3 client for the kinds
    that read S3 (None for every other)."""

    engine: Engine
    settings: Settings
    s3: Any = None

    def database(self, variable: str | None) -> Engine:
        """The source database named by a contract's `database_url_env`, else the store's."""
        if not variable:
            return self.engine
        from mesh_rag_pipelines.store.database import source_engine

        url = self.settings.get(variable)
        if not url:
            raise MissingSetting(f"source.database_url_env {variable} is not set")
        return source_engine(url)


@dataclass
class ShardState:
    """What the store holds for one shard that a read starts from."""

    known: Mapping[str, KnownDocument] = field(default_factory=dict)
    cursors: Mapping[str, str] = field(default_factory=dict)
    applied: AbstractSet[tuple[str, str]] = frozenset()


@dataclass(frozen=True)
class ShardVersion:
    """One shard's data version, with what it summarises: records and the newest change."""

    data_version: str
    records: int
    newest_change: datetime | None


class VersionDigest:
    """Builds a shard's data version from entries (an id and its version, checksum or etag)."""

    def __init__(self) -> None:
        self.entries: list[str] = []
        self.newest: datetime | None = None

    def add(self, entry: str, changed_at: datetime | None = None) -> None:
        self.entries.append(entry)
        if changed_at is not None and (self.newest is None or changed_at > self.newest):
            self.newest = changed_at

    def version(self) -> ShardVersion:
        digest = hashlib.sha256("\n".join(sorted(self.entries)).encode()).hexdigest()[:16]
        return ShardVersion(digest, len(self.entries), self.newest)


@dataclass(frozen=True)
class RedriveReset:
    """What a re-drive makes the next runs read again: landing objects by ledger key, and
    whether a table's watermarks restart."""

    object_keys: tuple[str, ...] = ()
    restart_watermarks: bool = False


class SourceKind(BaseModel, ABC):
    """The `source:` section of a contract; each kind is a subclass with its own fields."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    kind: str
    # A record whose text and metadata exceed this many UTF-8 bytes is quarantined, whatever
    # the source kind or format.
    max_record_bytes: int = Field(default=DEFAULT_MAX_RECORD_BYTES, ge=1024, le=256 * 1_048_576)
    # Seed data shipped with a sample product, loaded into the source by `mesh-rag seed`.
    seed: str | None = None

    # The tag Dagster shows on the product's source asset.
    dagster_kind: ClassVar[str]
    # Looked at on the contract's cadence (a state), or reported as its events land.
    polled: ClassVar[bool] = True
    needs_s3: ClassVar[bool] = False
    # A quarantined record's `record_ref` is its document id (a row, a file), not a line of a
    # change file holding several documents.
    refs_are_ids: ClassVar[bool] = True
    # The field a policy refusal names when nothing more precise applies.
    main_field: ClassVar[str]

    def schema_problem(self, schema: Any) -> tuple[str, str] | None:
        """(schema field, problem) when the contract's schema cannot map this kind's records."""
        return None

    @property
    def record_fields(self) -> tuple[str, ...]:
        """Fields the kind's records carry besides the contract's schema (not schema drift)."""
        return ()

    @abstractmethod
    def where(self, contract: DataProductContract) -> str:
        """Where the source is, as a person reads it (`table x.y`, `folder /docs`, `s3://b/p/`)."""

    @abstractmethod
    def read(
        self, contract: DataProductContract, shard: int, state: ShardState, ctx: SourceContext
    ) -> SourceRead:
        """The shard's changes the store has not applied, with the progress to record."""

    @abstractmethod
    def observe(
        self, contract: DataProductContract, ctx: SourceContext, states: Mapping[int, ShardState]
    ) -> dict[int, ShardVersion]:
        """Every shard's data version now (an empty shard has one too)."""

    def redrive(self, refs: AbstractSet[str]) -> RedriveReset:
        """What to read again for quarantined records from `refs`; a source read whole on
        every run needs nothing."""
        return RedriveReset()

    def seed_into(self, contract: DataProductContract, ctx: SourceContext, data: Path) -> str:
        """Load sample data into the source; what was loaded, for a person."""
        raise NotImplementedError(f"a {self.kind} source takes no seed data")

    @abstractmethod
    def preflight(self, contract: DataProductContract, ctx: SourceContext) -> None:
        """Reach the source as a run would; raise what is wrong."""

    def never_granted(self) -> Refusal | None:
        """What no platform policy may grant (the store's own tables, say)."""
        return None

    @abstractmethod
    def refusal(self, contract: DataProductContract, policy: PlatformPolicy) -> Refusal | None:
        """Why the platform policy does not grant this source to the contract's domain."""

    def refusal_at_run(
        self, contract: DataProductContract, policy: PlatformPolicy
    ) -> Refusal | None:
        """What only a read can see (a file linked out of its folder, say)."""
        return None

    def landing_claim(self) -> tuple[str, str] | None:
        """The (bucket, prefix) the source reads events from: owned by one product only."""
        return None
