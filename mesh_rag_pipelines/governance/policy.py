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

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mesh_rag_pipelines.settings import PLATFORM_POLICY, Settings
from mesh_rag_pipelines.sources.postgres_table import database_label

if TYPE_CHECKING:
    from mesh_rag_pipelines.contracts import DataProductContract

POLICY_FILE = "platform_policy.yaml"


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
        """Why the contract's source is not granted to its domain; None if it is. What no
        policy may grant (the store's own tables) is refused first; the source's kind judges
        the grant itself."""
        source = contract.source
        found = source.never_granted()
        if found:
            return Refusal(*found)
        if self.problem:
            return Refusal(source.main_field, self.problem)
        if contract.domain not in self.domains:
            return Refusal(
                source.main_field,
                f"the platform policy ({self.path}) grants domain {contract.domain} no source; "
                f"it lists {sorted(self.domains) or 'no domain'}",
            )
        found = source.refusal(contract, self)
        return Refusal(*found) if found else None


# --- finding and reading the policy --------------------------------------------------------------


def policy_path(root: Path, settings: Settings) -> tuple[Path, bool]:
    """The policy governing the contracts folder `root`, and whether that file exists:
    MESH_RAG_PLATFORM_POLICY, else the nearest platform_policy.yaml at or above `root`."""
    configured = settings.platform_policy
    if configured is not None:
        return configured.resolve(), configured.is_file()
    start = root.resolve()
    for folder in (start, *start.parents):
        candidate = folder / POLICY_FILE
        if candidate.is_file():
            return candidate, True
    return start / POLICY_FILE, False


def load_policy(root: Path, settings: Settings) -> PlatformPolicy:
    """The policy of the contracts folder `root`. A missing or broken policy grants nothing:
    its `problem` says why, and every contract is refused with it."""
    path, exists = policy_path(root, settings)
    if not exists:
        if settings.platform_policy is not None:
            where = f"{path} (named by {PLATFORM_POLICY}) does not exist"
        else:
            where = (
                f"there is no {POLICY_FILE} in {root.resolve()} or a folder above it, and "
                f"{PLATFORM_POLICY} is not set"
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


def policy_for(contract: DataProductContract, settings: Settings) -> PlatformPolicy:
    """The policy a contract runs under: that of the configured contracts folder
    (MESH_RAG_CONTRACTS_DIR, or the shipped products) when the contract's file lies in it, as
    the loader judged it; else that of the folder holding the contract's file."""
    from mesh_rag_pipelines.contracts.loader import PRODUCTS_DIR

    configured = (settings.contracts_dir or PRODUCTS_DIR).resolve()
    origin = contract._origin.resolve() if contract._origin else None
    if origin is None or origin.is_relative_to(configured):
        return load_policy(configured, settings)
    return load_policy(origin.parent, settings)


def ensure_granted(contract: DataProductContract, settings: Settings) -> None:
    """Raise SourceNotGranted unless the policy (read now) grants the contract's source, and
    what only a read can see holds too (a folder's files lie in granted folders once symbolic
    links are resolved)."""
    policy = policy_for(contract, settings)
    where = str(contract._origin) if contract._origin else f"product {contract.name}"
    refusal = policy.refusal(contract) or contract.source.refusal_at_run(contract, policy)
    if refusal:
        raise SourceNotGranted(where, *refusal)


# --- one owner per landing prefix ---------------------------------------------------------------


def overlapping_landings(
    contracts: Sequence[DataProductContract],
) -> list[tuple[DataProductContract, DataProductContract]]:
    """Pairs of contracts claiming overlapping landing keys: the same bucket, and one prefix a
    prefix of the other (each would read, and republish, the other's events)."""
    claims = [(c, claim) for c in contracts if (claim := c.source.landing_claim())]
    pairs = []
    for i, (first, (bucket_a, a)) in enumerate(claims):
        for second, (bucket_b, b) in claims[i + 1 :]:
            if bucket_a == bucket_b and (a.startswith(b) or b.startswith(a)):
                pairs.append((first, second))
    return pairs
