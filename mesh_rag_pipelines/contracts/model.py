"""Typed model of a data-product contract.

The contract is the only input the pipelines are built from, so every field is validated here,
before any asset exists: a typo must fail at load time, not in the middle of a backfill.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Literal

from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from mesh_rag_pipelines.contracts.fields import (  # noqa: F401 - the contract's vocabulary
    GROUP_PATTERN,
    PII_ENTITIES,
    FieldProblem,
    PiiEntity,
)
from mesh_rag_pipelines.settings import DEFAULT_SHARDS
from mesh_rag_pipelines.sources import SourceSpec

_NAME = r"^[a-z][a-z0-9_]{1,62}$"
# A product's name is part of PostgreSQL identifiers of at most 63 characters: its index tables
# `idx_<name>__<10 hex digits>` and their indexes (`..._hnsw`): 63 - 21 characters are left.
MAX_PRODUCT_NAME = 42
_DURATION = re.compile(r"^(\d+)\s*(s|m|h|d)$")
_DURATION_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_LONGEST_DURATION = timedelta(days=36500)
MIN_POLL_INTERVAL = timedelta(seconds=5)
DEFAULT_POLL_INTERVAL = "1m"

# Models the `local` provider serves from installed packages, with their output dimensions.
LOCAL_MODEL_DIMENSIONS = {"all-MiniLM-L6-v2": 384}


def parse_duration(text: str) -> timedelta:
    """Parse '90s', '15m', '2h' or '7d' (at most 100 years)."""
    match = _DURATION.match(text.strip())
    if not match or int(match.group(1)) <= 0:
        raise ValueError(f"{text!r} is not a positive duration like '30m', '2h' or '7d'")
    seconds = (
        int(match.group(1)) * timedelta(**{_DURATION_UNITS[match.group(2)]: 1}).total_seconds()
    )
    if seconds > _LONGEST_DURATION.total_seconds():
        raise ValueError(
            f"{text!r} is too long; the longest accepted duration is {_LONGEST_DURATION.days}d"
        )
    return timedelta(seconds=seconds)


def validate_cron(expression: str) -> str:
    """The grammar Dagster schedules accept: five fields, and a day that exists."""
    if not croniter.is_valid(expression):
        raise ValueError(f"{expression!r} is not a valid cron expression")
    fields, *_ = croniter.expand(expression)
    if len(fields) != 5:
        raise ValueError(f"{expression!r} is not a five-field cron expression")
    days, months = fields[2], fields[3]
    if months == [2] and set(days) <= {30, 31}:
        raise ValueError(f"{expression!r} never fires (February has no day {days[0]})")
    return expression


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class SchemaSpec(_Strict):
    """How a source record maps onto a document."""

    id_field: str
    version_field: str
    updated_at_field: str
    text_fields: list[str] = Field(min_length=1)
    title_field: str | None = None
    metadata_fields: list[str] = []
    # A field listing the groups that may read this document (a subset of the product's).
    acl_field: str | None = None
    # A field naming the document's type (default: the product's document_type).
    document_type_field: str | None = None

    @property
    def mapped_fields(self) -> list[str]:
        """Every record field a document is made of, once each, in a stable order."""
        optional = [self.title_field, self.acl_field, self.document_type_field]
        names = [self.id_field, self.version_field, self.updated_at_field, *self.text_fields]
        names += [name for name in optional if name] + self.metadata_fields
        return list(dict.fromkeys(names))


class QualitySpec(_Strict):
    """What a record must hold before it is embedded; a violating record is quarantined, and
    a run whose share of violations passes `max_violation_rate` stops before the index."""

    required_metadata: list[str] = []
    allowed_document_types: list[str] = []
    min_text_chars: int = Field(default=1, ge=1)
    max_violation_rate: float = Field(default=1.0, ge=0.0, le=1.0)


class FreshnessSpec(_Strict):
    """The SLA (how long a change may wait before the product reads stale), and for polled
    sources (tables, folders) how often to look for changes: `poll_interval` (a duration, at
    least 5s) or `poll_cron` (UTC); every minute if neither is set."""

    sla: str
    poll_cron: str | None = None
    poll_interval: str | None = None

    @field_validator("sla")
    @classmethod
    def _valid_sla(cls, value: str) -> str:
        parse_duration(value)
        return value

    @field_validator("poll_cron")
    @classmethod
    def _valid_cron(cls, value: str | None) -> str | None:
        return None if value is None else validate_cron(value)

    @field_validator("poll_interval")
    @classmethod
    def _valid_interval(cls, value: str | None) -> str | None:
        if value is not None and parse_duration(value) < MIN_POLL_INTERVAL:
            raise ValueError(f"{value!r} is shorter than the shortest poll interval, 5s")
        return value

    @model_validator(mode="after")
    def _one_cadence(self) -> FreshnessSpec:
        if self.poll_cron and self.poll_interval:
            raise FieldProblem("poll_interval", "set poll_interval or poll_cron, not both")
        return self

    @property
    def sla_timedelta(self) -> timedelta:
        return parse_duration(self.sla)

    def next_poll(self, last: datetime) -> datetime:
        """When a source last looked at `last` is looked at again."""
        if self.poll_cron:
            return croniter(self.poll_cron, last).get_next(datetime)
        return last + parse_duration(self.poll_interval or DEFAULT_POLL_INTERVAL)

    @property
    def cadence(self) -> str:
        if self.poll_cron:
            return f"at {self.poll_cron} (UTC)"
        return f"every {self.poll_interval or DEFAULT_POLL_INTERVAL}"


class ChunkingSpec(_Strict):
    name: Literal["markdown_sections", "paragraphs"] = "markdown_sections"
    version: int = Field(ge=1)
    max_words: int = Field(default=180, ge=20, le=2000)
    overlap_words: int = Field(default=20, ge=0)

    @model_validator(mode="after")
    def _overlap_leaves_progress(self) -> ChunkingSpec:
        # Each chunk advances by max_words - overlap_words; more overlap multiplies chunks.
        if self.overlap_words * 2 > self.max_words:
            raise FieldProblem(
                "overlap_words",
                f"overlap_words ({self.overlap_words}) must be at most half of "
                f"max_words ({self.max_words})",
            )
        return self

    @property
    def identity(self) -> str:
        return f"{self.name}-v{self.version}-w{self.max_words}-o{self.overlap_words}"


class EmbeddingSpec(_Strict):
    provider: Literal["local", "openai"] = "local"
    model: str
    dimensions: int = Field(ge=1, le=16000)
    distance: Literal["cosine", "inner_product", "l2"] = "cosine"
    revision: str = "1"

    @model_validator(mode="after")
    def _local_model_exists(self) -> EmbeddingSpec:
        if self.provider != "local":
            return self
        if self.model not in LOCAL_MODEL_DIMENSIONS:
            raise FieldProblem(
                "model",
                f"{self.model!r} is not a local model; installed: {sorted(LOCAL_MODEL_DIMENSIONS)}",
            )
        actual = LOCAL_MODEL_DIMENSIONS[self.model]
        if actual != self.dimensions:
            raise FieldProblem(
                "dimensions",
                f"local model {self.model!r} has {actual} dimensions, not {self.dimensions}",
            )
        return self

    @property
    def model_id(self) -> str:
        """Identity of the vectors: two specs with the same id produce interchangeable vectors."""
        return f"{self.provider}:{self.model}:{self.revision}:{self.dimensions}"


class IndexSpec(_Strict):
    """HNSW parameters of an index version: how it is built (m, ef_construction) and how wide a
    query searches by default (ef_search). Changing any of them is a release, like a new model."""

    m: int = Field(default=16, ge=2, le=100)
    ef_construction: int = Field(default=64, ge=4, le=1000)
    ef_search: int = Field(default=100, ge=1, le=1000)

    @model_validator(mode="after")
    def _pgvector_bounds(self) -> IndexSpec:
        if self.ef_construction < 2 * self.m:
            raise FieldProblem(
                "ef_construction",
                f"ef_construction ({self.ef_construction}) must be at least twice m ({self.m})",
            )
        return self


class JudgmentsSpec(_Strict):
    """Relevance judgments in BEIR's formats, paths relative to the contract's file."""

    queries: str  # JSON Lines of {"_id", "text"}
    qrels: str  # TSV of query-id, corpus-id, score (a header line is allowed)


class ReleaseSpec(_Strict):
    """The gate a new index version must pass before it may serve, and what happens after."""

    min_coverage: float = Field(default=1.0, ge=0.0, le=1.0)
    max_quality_drop: float = Field(default=0.02, ge=0.0, le=1.0)
    judgments: JudgmentsSpec | None = None
    recall_k: int = Field(default=100, ge=1, le=1000)
    auto_swap: bool = False
    retain_retired: str = "7d"

    @field_validator("retain_retired")
    @classmethod
    def _valid_retention(cls, value: str) -> str:
        parse_duration(value)
        return value


class RetrievalSpec(_Strict):
    """What a caller may get back: documents younger than max_age, of the allowed types, scoring
    at least min_score (similarity for cosine and inner product, minus the distance for l2);
    and, if set, how fast: the p99 of a request's total latency (milliseconds, embedding
    included) above which the product's monitoring warns."""

    max_age: str | None = None
    allowed_document_types: list[str] = []
    min_score: float | None = Field(default=None, allow_inf_nan=False)
    latency_objective_ms: int | None = Field(default=None, ge=1, le=60_000)

    @field_validator("max_age")
    @classmethod
    def _valid_age(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value


class GoldenQuery(_Strict):
    query: str = Field(min_length=3)
    expected_document_ids: list[str] = Field(min_length=1)


def shard_of(doc_id: str, shards: int) -> int:
    """A document's hash shard: stable across processes and releases (unlike hash())."""
    return int.from_bytes(hashlib.sha1(doc_id.encode()).digest()[:4], "big") % shards


class DataProductContract(_Strict):
    name: str = Field(pattern=_NAME)
    domain: str = Field(pattern=_NAME)
    owner: str = Field(min_length=3)
    description: str = Field(min_length=10)
    document_type: str
    tags: list[str] = []
    # Static hash shards of the document id: independent runs of a backfill, one per worker.
    shards: int = Field(default=DEFAULT_SHARDS, ge=1, le=1024)
    source: SourceSpec
    record_schema: SchemaSpec = Field(alias="schema")
    acl_groups: list[Annotated[str, Field(pattern=GROUP_PATTERN)]] = Field(min_length=1)
    # Fields never read, at any depth of a record; and entity types masked wherever they occur.
    pii_fields: list[str] = []
    pii_masking: dict[PiiEntity, Literal["redact", "placeholder", "hash"]] = {}
    quality: QualitySpec = QualitySpec()
    freshness: FreshnessSpec
    chunking: ChunkingSpec
    embedding: EmbeddingSpec
    index: IndexSpec = IndexSpec()
    retrieval: RetrievalSpec = RetrievalSpec()
    release: ReleaseSpec = ReleaseSpec()
    golden_queries: list[GoldenQuery] = []
    _origin: Path | None = PrivateAttr(default=None)

    def shard_of(self, doc_id: str) -> int:
        """The shard a document belongs to: stable across processes and releases."""
        return shard_of(doc_id, self.shards)

    def resolve_path(self, relative: str) -> Path:
        """Paths in a contract are relative to the folder of its YAML file."""
        base = self._origin.parent if self._origin else Path.cwd()
        return (base / relative).resolve()

    @field_validator("name")
    @classmethod
    def _fits_identifiers(cls, value: str) -> str:
        if len(value) > MAX_PRODUCT_NAME:
            raise ValueError(
                f"{value!r} has {len(value)} characters, more than {MAX_PRODUCT_NAME}: a product's "
                "name is part of PostgreSQL identifiers (idx_<name>__<version>_hnsw), which hold "
                "at most 63"
            )
        return value

    @field_validator("owner")
    @classmethod
    def _valid_owner(cls, value: str) -> str:
        if not (value.startswith("team:") or re.match(r"^[^@\s]+@[^@\s]+\.\w+$", value)):
            raise ValueError(f"{value!r} must be an email or 'team:<name>'")
        return value

    @model_validator(mode="after")
    def _schema_maps_the_source(self) -> DataProductContract:
        found = self.source.schema_problem(self.record_schema)
        if found:
            raise FieldProblem(f"schema.{found[0]}", found[1])
        return self

    @model_validator(mode="after")
    def _pii_never_indexed(self) -> DataProductContract:
        schema = self.record_schema
        if schema.id_field in self.pii_fields:
            raise FieldProblem(
                "pii_fields",
                f"{schema.id_field!r} is the id field: every index row carries it, so it "
                "cannot be PII; use a surrogate key as the id",
            )
        indexed = set(schema.text_fields) | set(schema.metadata_fields)
        if schema.title_field:
            indexed.add(schema.title_field)
        leaked = sorted(indexed & set(self.pii_fields))
        if leaked:
            raise FieldProblem(
                "pii_fields", f"PII fields {leaked} must not be text, title or metadata fields"
            )
        return self
