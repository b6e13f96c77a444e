"""The platform policy: which sources each domain's data products may read.

Federated governance: domain teams write their contracts, the platform team writes one policy
file, `platform_policy.yaml`, granting each domain its sources:

    domains:
      commerce:
        databases:                        # database_url_env: the variable naming the
          - tables: ["sample_sources.*"]  # database; omitted, the store's own database
      customer_support:
        buckets:
          - bucket: northwind-landing
            prefixes: [support_tickets/]  # plain S3 key prefixes: end them with "/"
      people:
        folders: [people]                 # relative to the policy file; every folder below

A contract may read only what its domain is granted. Whatever the policy says, no contract may
read the store's own schema (`mesh_rag`) or PostgreSQL's system schemas (`pg_catalog`,
`information_schema`, any `pg_*`) in any database (a source database may be the store), and a
landing prefix belongs to one product only. A folder is judged by its real path (`..` and
symbolic links resolved), and a pattern may not climb out of it.

The policy is found at `MESH_RAG_PLATFORM_POLICY` if set, else as the nearest
`platform_policy.yaml` in the contracts folder or a folder above it. Without one, no source is
granted: every contract is refused, naming where the policy was looked for. The shipped
products carry their own policy (`mesh_rag_pipelines/products/platform_policy.yaml`).

It is applied twice: when contracts load (`check_contracts`: `mesh-rag check`, the CLI and every
domain's code location report a refused contract as a ContractError), and before every read
(`pipeline.read_source` calls `ensure_granted`), so that a contract held by a long-running
process, or one that reached a run without the loader, still cannot read what the policy does
not grant (or no longer grants).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath
from typing import NamedTuple

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mesh_rag_pipelines import settings
from mesh_rag_pipelines.contracts.model import DataProductContract

POLICY_FILE = "platform_policy.yaml"
# Readable by no contract in any database: PostgreSQL reserves every pg_* schema name.
SYSTEM_SCHEMAS = frozenset({"pg_catalog", "information_schema"})
# The field a refusal names when nothing more precise applies (no policy, domain not listed).
_MAIN_FIELD = {
    "postgres_table": "source.table",
    "s3_landing": "source.bucket",
    "files": "source.path",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseGrant(_Strict):
    """Tables of one database: `schema.table` patterns (`*` and `?` as in shell globs)."""

    database_url_env: str | None = None
    tables: list[str] = Field(min_length=1)

    @field_validator("tables")
    @classmethod
    def _qualified(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            schema, dot, table = pattern.partition(".")
            if not (schema and dot and table) or "." in table or pattern != pattern.strip():
                raise ValueError(f"{pattern!r} is not a schema.table pattern")
        return patterns

    @property
    def database(self) -> str:
        return database_label(self.database_url_env)


class BucketGrant(_Strict):
    """Key prefixes of one bucket; "" grants the whole bucket."""

    bucket: str = Field(min_length=1)
    prefixes: list[str] = Field(min_length=1)


class DomainGrant(_Strict):
    databases: list[DatabaseGrant] = []
    buckets: list[BucketGrant] = []
    folders: list[str] = []


class _PolicyDocument(_Strict):
    domains: dict[str, DomainGrant | None]


def database_label(env: str | None) -> str:
    return f"database {env}" if env else "the store database"


class Refusal(NamedTuple):
    """A contract's source the policy does not grant: the contract field, and why."""

    field: str
    problem: str


class SourceNotGranted(RuntimeError):
    """A read refused at run time; the message is the one `mesh-rag check` prints."""

    def __init__(self, where: str, field: str, problem: str):
        self.where, self.field, self.problem = where, field, problem
        super().__init__(f"{where}: field '{field}': {problem}")

    def __reduce__(self) -> tuple[type[SourceNotGranted], tuple[str, str, str]]:
        return SourceNotGranted, (self.where, self.field, self.problem)


@dataclass(frozen=True)
class PlatformPolicy:
    """A policy file as read: its grants, or (`problem`) why no source is granted at all."""

    path: Path
    domains: dict[str, DomainGrant]
    problem: str | None = None

    def label(self, domain: str) -> str:
        return f"the platform policy ({self.path}, domain {domain})"

    def folders(self, domain: str) -> list[Path]:
        """The domain's granted folders, resolved (relative ones against the policy's folder)."""
        grant = self.domains.get(domain)
        return [(self.path.parent / folder).resolve() for folder in grant.folders] if grant else []

    def refusal(self, contract: DataProductContract) -> Refusal | None:
        """Why the contract's source is not granted to its domain; None if it is."""
        source = contract.source
        if source.kind == "postgres_table":
            # The store's and PostgreSQL's own tables are refused before anything else.
            reserved = reserved_table(source.table or "")
            if reserved:
                return reserved
        main = _MAIN_FIELD[source.kind]
        if self.problem:
            return Refusal(main, self.problem)
        grant = self.domains.get(contract.domain)
        if grant is None:
            return Refusal(
                main,
                f"the platform policy ({self.path}) grants domain {contract.domain} no source; "
                f"it lists {sorted(self.domains) or 'no domain'}",
            )
        if source.kind == "postgres_table":
            return self._table_refusal(contract, grant)
        if source.kind == "s3_landing":
            return self._landing_refusal(contract, grant)
        return self._folder_refusal(contract)

    def _table_refusal(self, contract: DataProductContract, grant: DomainGrant) -> Refusal | None:
        table, env = contract.source.table or "", contract.source.database_url_env
        database = database_label(env)
        granted = [
            f"{entry.database}: {pattern}" for entry in grant.databases for pattern in entry.tables
        ]
        patterns = [p for e in grant.databases if e.database_url_env == env for p in e.tables]
        if not patterns:
            return Refusal(
                "source.database_url_env" if env else "source.table",
                f"{self.label(contract.domain)} grants no table in {database}; it grants: "
                f"{granted}",
            )
        if not any(fnmatchcase(table, pattern) for pattern in patterns):
            return Refusal(
                "source.table",
                f"{table} is not among the tables {self.label(contract.domain)} grants in "
                f"{database}: {granted}",
            )
        return None

    def _landing_refusal(self, contract: DataProductContract, grant: DomainGrant) -> Refusal | None:
        bucket, prefix = contract.source.bucket or "", contract.source.prefix or ""
        granted = [f"s3://{entry.bucket}/{p}" for entry in grant.buckets for p in entry.prefixes]
        prefixes = [p for entry in grant.buckets if entry.bucket == bucket for p in entry.prefixes]
        if not prefixes:
            return Refusal(
                "source.bucket",
                f"bucket {bucket} is not one {self.label(contract.domain)} grants: {granted}",
            )
        if not any(prefix.startswith(granted_prefix) for granted_prefix in prefixes):
            return Refusal(
                "source.prefix",
                f"s3://{bucket}/{prefix} is outside the landing prefixes "
                f"{self.label(contract.domain)} grants: {granted}",
            )
        return None

    def _folder_refusal(self, contract: DataProductContract) -> Refusal | None:
        folder = contract.resolve_path(contract.source.path or ".")
        roots = self.folders(contract.domain)
        if not _inside(folder, roots):
            return Refusal(
                "source.path",
                f"{folder} is outside the folders {self.label(contract.domain)} grants: "
                f"{[str(root) for root in roots]}",
            )
        pattern = contract.source.pattern
        if pattern.startswith("/") or ".." in PurePosixPath(pattern).parts:
            return Refusal(
                "source.pattern",
                f"{pattern!r} reaches outside the folder {folder}: a pattern may not start at / "
                "or hold '..'",
            )
        return None


def reserved_table(table: str) -> Refusal | None:
    """Tables no contract may read, whatever the policy grants (in any database)."""
    schema, _, _ = table.rpartition(".")
    if not schema:
        return Refusal(
            "source.table",
            f"{table!r} names no schema: the platform policy grants tables by schema, so write "
            f"it as <schema>.{table} (an unqualified name may resolve to a system table)",
        )
    from mesh_rag_pipelines.store.schema import SCHEMA  # the store imports contracts

    lowered = schema.lower()
    if lowered == SCHEMA:
        return Refusal("source.table", f"{table} is the store's own table: no contract may read it")
    if lowered in SYSTEM_SCHEMAS or lowered.startswith("pg_"):
        return Refusal(
            "source.table",
            f"{table} is in PostgreSQL's system schema {schema}: no contract may read it",
        )
    return None


def _inside(path: Path, roots: Sequence[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


# --- finding and reading the policy --------------------------------------------------------------


def policy_path(root: Path) -> tuple[Path, bool]:
    """The policy governing the contracts folder `root`, and whether that file exists:
    MESH_RAG_PLATFORM_POLICY, else the nearest platform_policy.yaml at or above `root`."""
    configured = settings.platform_policy()
    if configured is not None:
        return configured.resolve(), configured.is_file()
    start = root.resolve()
    for folder in (start, *start.parents):
        candidate = folder / POLICY_FILE
        if candidate.is_file():
            return candidate, True
    return start / POLICY_FILE, False


def load_policy(root: Path) -> PlatformPolicy:
    """The policy of the contracts folder `root`. A missing or broken policy grants nothing:
    its `problem` says why, and every contract is refused with it."""
    path, exists = policy_path(root)
    if not exists:
        if settings.platform_policy() is not None:
            where = f"{path} (named by {settings.PLATFORM_POLICY}) does not exist"
        else:
            where = (
                f"there is no {POLICY_FILE} in {root.resolve()} or a folder above it, and "
                f"{settings.PLATFORM_POLICY} is not set"
            )
        return PlatformPolicy(path, {}, f"no platform policy grants any source: {where}")
    try:
        raw = yaml.safe_load(path.read_text())
        document = _PolicyDocument.model_validate(raw)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        return PlatformPolicy(path, {}, _broken(path, f"cannot be read: {exc}"))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "<root>"
        message = first["msg"].removeprefix("Value error, ")
        return PlatformPolicy(path, {}, _broken(path, f"field '{where}': {message}"))
    grants = {name: grant or DomainGrant() for name, grant in document.domains.items()}
    return PlatformPolicy(path, grants)


def _broken(path: Path, problem: str) -> str:
    return f"the platform policy {path} is invalid, so no source is granted: {problem}"


def policy_for(contract: DataProductContract) -> PlatformPolicy:
    """The policy a contract runs under: that of the configured contracts folder
    (MESH_RAG_CONTRACTS_DIR, or the shipped products) when the contract's file lies in it, as
    the loader judged it; else that of the folder holding the contract's file."""
    from mesh_rag_pipelines.contracts.loader import PRODUCTS_DIR

    configured = (settings.contracts_dir() or PRODUCTS_DIR).resolve()
    origin = contract._origin.resolve() if contract._origin else None
    if origin is None or origin.is_relative_to(configured):
        return load_policy(configured)
    return load_policy(origin.parent)


def ensure_granted(contract: DataProductContract) -> None:
    """Raise SourceNotGranted unless the policy (read now) grants the contract's source. For a
    folder, every file the pattern matches must also lie in a granted folder once symbolic
    links are resolved."""
    policy = policy_for(contract)
    where = str(contract._origin) if contract._origin else f"product {contract.name}"
    refusal = policy.refusal(contract)
    if refusal:
        raise SourceNotGranted(where, *refusal)
    if contract.source.kind == "files":
        escaped = _linked_outside(contract, policy)
        if escaped:
            raise SourceNotGranted(where, "source.path", escaped)


def _linked_outside(contract: DataProductContract, policy: PlatformPolicy) -> str | None:
    from mesh_rag_pipelines.sources.files import source_files

    roots = policy.folders(contract.domain)
    try:
        folder, paths = source_files(contract)
    except FileNotFoundError:
        return None  # the reader itself reports a missing folder
    for path in paths:
        real = Path(os.path.realpath(path))
        if not _inside(real, roots):
            return (
                f"{path} is a link to {real}, outside the folders "
                f"{policy.label(contract.domain)} grants: {[str(root) for root in roots]}"
            )
    return None


# --- one owner per landing prefix ---------------------------------------------------------------


def overlapping_landings(
    contracts: Sequence[DataProductContract],
) -> list[tuple[DataProductContract, DataProductContract]]:
    """Pairs of landing-zone contracts reading overlapping keys: the same bucket, and one
    prefix a prefix of the other (each would read, and republish, the other's events)."""
    landings = [c for c in contracts if c.source.kind == "s3_landing"]
    pairs = []
    for i, first in enumerate(landings):
        for second in landings[i + 1 :]:
            if first.source.bucket != second.source.bucket:
                continue
            a, b = first.source.prefix or "", second.source.prefix or ""
            if a.startswith(b) or b.startswith(a):
                pairs.append((first, second))
    return pairs
