"""Typed model of a data-product contract.

The contract is the only input the pipelines are built from, so every field is validated here,
before any asset exists: a typo must fail at load time, not in the middle of a backfill.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

_NAME = r"^[a-z][a-z0-9_]{1,62}$"
_DURATION = re.compile(r"^(\d+)\s*(s|m|h|d)$")
_DURATION_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_duration(text: str) -> timedelta:
    """Parse '90s', '15m', '2h' or '7d'."""
    match = _DURATION.match(text.strip())
    if not match or int(match.group(1)) <= 0:
        raise ValueError(f"{text!r} is not a positive duration like '30m', '2h' or '7d'")
    return timedelta(**{_DURATION_UNITS[match.group(2)]: int(match.group(1))})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class SourceSpec(_Strict):
    """Where the product's records come from; `kind` picks the reader."""

    kind: Literal["postgres_table", "files", "s3_landing"]
    # postgres_table
    table: str | None = Field(default=None, pattern=r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)?$")
    database_url_env: str | None = None
    # files
    path: str | None = None
    pattern: str = "*.md"
    # s3_landing
    bucket: str | None = None
    prefix: str | None = None
    format: Literal["jsonl", "debezium", "dms_csv"] = "jsonl"
    dms_columns: list[str] = []
    # seed data shipped with a sample product, loaded into the source by `mesh-rag demo`
    seed: str | None = None

    @model_validator(mode="after")
    def _required_per_kind(self) -> SourceSpec:
        required = {
            "postgres_table": ["table"],
            "files": ["path"],
            "s3_landing": ["bucket", "prefix"],
        }[self.kind]
        for name in required:
            if not getattr(self, name):
                raise ValueError(f"source kind {self.kind!r} requires field 'source.{name}'")
        if self.format == "dms_csv" and not self.dms_columns:
            raise ValueError("source format 'dms_csv' requires 'source.dms_columns'")
        return self


class SchemaSpec(_Strict):
    """How a source record maps onto a document."""

    id_field: str
    version_field: str
    updated_at_field: str
    text_fields: list[str] = Field(min_length=1)
    title_field: str | None = None
    metadata_fields: list[str] = []


class FreshnessSpec(_Strict):
    sla: str
    poll_cron: str | None = None

    @field_validator("sla")
    @classmethod
    def _valid_sla(cls, value: str) -> str:
        parse_duration(value)
        return value

    @field_validator("poll_cron")
    @classmethod
    def _valid_cron(cls, value: str | None) -> str | None:
        if value is not None and len(value.split()) != 5:
            raise ValueError(f"{value!r} is not a five-field cron expression")
        return value

    @property
    def sla_timedelta(self) -> timedelta:
        return parse_duration(self.sla)


class ChunkingSpec(_Strict):
    name: Literal["markdown_sections", "paragraphs"] = "markdown_sections"
    version: int = Field(ge=1)
    max_words: int = Field(default=180, ge=20, le=2000)
    overlap_words: int = Field(default=20, ge=0)

    @property
    def identity(self) -> str:
        return f"{self.name}-v{self.version}-w{self.max_words}-o{self.overlap_words}"


class EmbeddingSpec(_Strict):
    provider: Literal["local", "openai"] = "local"
    model: str
    dimensions: int = Field(ge=1, le=16000)
    distance: Literal["cosine", "inner_product", "l2"] = "cosine"
    revision: str = "1"

    @property
    def model_id(self) -> str:
        """Identity of the vectors: two specs with the same id produce interchangeable vectors."""
        return f"{self.provider}:{self.model}:{self.revision}:{self.dimensions}"


class RetrievalSpec(_Strict):
    max_age: str | None = None
    allowed_document_types: list[str] = []
    min_score: float = 0.0

    @field_validator("max_age")
    @classmethod
    def _valid_age(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value


class GoldenQuery(_Strict):
    query: str = Field(min_length=3)
    expected_document_ids: list[str] = Field(min_length=1)


class DataProductContract(_Strict):
    name: str = Field(pattern=_NAME)
    domain: str = Field(pattern=_NAME)
    owner: str = Field(min_length=3)
    description: str = Field(min_length=10)
    document_type: str
    source: SourceSpec
    record_schema: SchemaSpec = Field(alias="schema")
    acl_groups: list[str] = Field(min_length=1)
    pii_fields: list[str] = []
    freshness: FreshnessSpec
    chunking: ChunkingSpec
    embedding: EmbeddingSpec
    retrieval: RetrievalSpec = RetrievalSpec()
    golden_queries: list[GoldenQuery] = []
    _origin: Path | None = PrivateAttr(default=None)

    def resolve_path(self, relative: str) -> Path:
        """Paths in a contract are relative to the folder of its YAML file."""
        base = self._origin.parent if self._origin else Path.cwd()
        return (base / relative).resolve()

    @field_validator("owner")
    @classmethod
    def _valid_owner(cls, value: str) -> str:
        if not (value.startswith("team:") or re.match(r"^[^@\s]+@[^@\s]+\.\w+$", value)):
            raise ValueError(f"{value!r} must be an email or 'team:<name>'")
        return value

    @model_validator(mode="after")
    def _pii_never_indexed(self) -> DataProductContract:
        indexed = set(self.record_schema.text_fields) | set(self.record_schema.metadata_fields)
        if self.record_schema.title_field:
            indexed.add(self.record_schema.title_field)
        leaked = sorted(indexed & set(self.pii_fields))
        if leaked:
            raise ValueError(f"PII fields {leaked} must not be text, title or metadata fields")
        return self
