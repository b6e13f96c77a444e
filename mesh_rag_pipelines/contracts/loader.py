"""Load contracts from YAML files, failing with the file, the field and what is wrong.

A contract is either a Dagster component file, `<domain>/<product>/defs.yaml` whose
`attributes:` are the contract (how the shipped products are laid out, one folder per domain),
or a plain `<product>.yaml` file. Every problem of every file is reported at once: a team fixing
its contract sees the whole list, and one file's problems never hide another's.

A folder of contracts is judged against its platform policy (`governance/policy.py`): a contract
whose source the policy does not grant its domain, or whose landing prefix overlaps another
contract's, is reported like any other problem, naming the file, the field and the policy.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from mesh_rag_pipelines.contracts.model import DataProductContract, FieldProblem
from mesh_rag_pipelines.governance.policy import (
    POLICY_FILE,
    PlatformPolicy,
    load_policy,
    overlapping_landings,
)
from mesh_rag_pipelines.settings import Settings
from mesh_rag_pipelines.settings import current as current_settings
from mesh_rag_pipelines.sources import SOURCE_KINDS

PRODUCTS_DIR = Path(__file__).resolve().parent.parent / "products"
CONTRACT_PATTERNS = ("*.yaml", "*.yml")
COMPONENT_FILE = "defs.yaml"
COMPONENT_TYPE = "mesh_rag_pipelines.components.DataProduct"


class ContractError(ValueError):
    """A contract file that cannot become a pipeline."""

    def __init__(self, path: Path, field: str, problem: str):
        self.path, self.field, self.problem = path, field, problem
        super().__init__(f"{path}: field '{field}': {problem}")


class ContractErrors(ValueError):
    """Every problem found in a folder of contracts."""

    def __init__(self, errors: list[ContractError]):
        self.errors = errors
        files = len({error.path for error in errors})
        lines = [f"{len(errors)} problems in {files} contract files:", *map(str, errors)]
        super().__init__("\n".join(lines))


def _field_path(loc: Iterable[int | str]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts[-1] = f"{parts[-1]}[{item}]" if parts else f"[{item}]"
        else:
            parts.append(item)
    return ".".join(parts) or "<root>"


def _problems(path: Path, exc: ValidationError) -> list[ContractError]:
    found = []
    for error in exc.errors():
        loc: list[Any] = list(error["loc"])
        # A source kind's own fields are reported under `source.`, not under the kind's tag.
        kind = loc.pop(1) if loc[:1] == ["source"] and loc[1:2] and loc[1] in SOURCE_KINDS else None
        cause = (error.get("ctx") or {}).get("error")
        if isinstance(cause, FieldProblem):
            loc.append(cause.field)
        if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
            loc.append("kind")
            kinds = [repr(kind) for kind in SOURCE_KINDS]
            problem = f"a source kind should be {', '.join(kinds[:-1])} or {kinds[-1]}"
        elif error["type"] == "missing":
            problem = (
                f"source kind {kind!r} requires field '{_field_path(loc)}'"
                if kind
                else "missing required field"
            )
        elif error["type"] == "extra_forbidden":
            problem = (
                "unknown field (check the spelling against the contract reference, "
                "mesh_rag_pipelines/contracts/README.md)"
            )
        else:
            problem = error["msg"].removeprefix("Value error, ")
        found.append(ContractError(path, _field_path(loc), problem))
    return found


def _contract_or_problems(
    path: Path, root: Path | None = None
) -> DataProductContract | list[ContractError] | None:
    """The contract in `path`, its problems, or None for a component file of another type."""
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        return [ContractError(path, "<yaml>", f"not valid YAML: {exc}")]
    if path.name == COMPONENT_FILE and isinstance(raw, dict):
        if raw.get("type") != COMPONENT_TYPE:
            return None
        raw = raw.get("attributes")
    return contract_from_attributes(raw, path, root)


def contract_from_attributes(
    raw: Any, path: Path, root: Path | None = None
) -> DataProductContract | list[ContractError]:
    """A contract from the mapping a file holds (a component file's `attributes:`), checked
    as every path checks it: fields, name against the file or folder, domain against its
    folder. `mesh-rag`, the code locations and `dg` (the DataProduct component) all load here."""
    if not isinstance(raw, dict):
        return [ContractError(path, "<root>", "must be a mapping of contract fields")]
    try:
        contract = DataProductContract.model_validate(raw)
    except ValidationError as exc:
        return _problems(path, exc)
    component = path.name == COMPONENT_FILE
    expected = product_name(path)
    if contract.name != expected:
        where = "folder" if component else "file"
        return [
            ContractError(
                path, "name", f"{contract.name!r} must equal the {where} name {expected!r}"
            )
        ]
    in_domain_folder = root is not None and len(path.relative_to(root).parts) == 3
    if component and in_domain_folder and contract.domain != path.parent.parent.name:
        problem = f"{contract.domain!r} must equal the domain folder {path.parent.parent.name!r}"
        return [ContractError(path, "domain", problem)]
    contract._origin = path.resolve()
    return contract


def contract_text(path: Path) -> str:
    """The contract's YAML as its team wrote it (a component file's attributes, dedented)."""
    text = path.read_text()
    if path.name != COMPONENT_FILE:
        return text
    return textwrap.dedent(text.split("\nattributes:\n", 1)[1])


def product_name(path: Path) -> str:
    """The product a contract file declares by where it lies: its folder, or its file name."""
    return path.parent.name if path.name == COMPONENT_FILE else path.stem


def domain_name(path: Path, root: Path) -> str:
    """The domain a contract file belongs to, even when the file is broken: the domain folder of
    a component file (`<domain>/<product>/defs.yaml`), else the file's own `domain:` value,
    else its product name (so that a broken file still fails a location of its own)."""
    parts = path.relative_to(root).parts
    if path.name == COMPONENT_FILE and len(parts) == 3:
        return parts[0]
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError:
        raw = None
    if isinstance(raw, dict) and path.name == COMPONENT_FILE:
        raw = raw.get("attributes")
    domain = raw.get("domain") if isinstance(raw, dict) else None
    return domain if isinstance(domain, str) and domain else product_name(path)


def find_contract(directory: Path, name: str) -> Path:
    """The file holding product `name`'s contract in `directory`."""
    for path in contract_files(directory):
        if product_name(path) == name:
            return path
    raise FileNotFoundError(f"no contract for product {name!r} in {directory}")


def load_contract(path: Path) -> DataProductContract:
    """One contract; its first problem is raised as a ContractError."""
    loaded = _contract_or_problems(path)
    if loaded is None:
        raise ContractError(path, "type", f"not a data product component ({COMPONENT_TYPE})")
    if isinstance(loaded, list):
        raise loaded[0]
    return loaded


def contract_files(directory: Path) -> list[Path]:
    """Plain contract files in `directory` (not its platform policy), and component files at
    any depth below it."""
    plain = [
        path
        for pattern in CONTRACT_PATTERNS
        for path in directory.glob(pattern)
        if path.name not in (COMPONENT_FILE, POLICY_FILE)
    ]
    return sorted([*plain, *directory.rglob(COMPONENT_FILE)])


def check_contracts(
    directory: Path | None = None, settings: Settings | None = None
) -> tuple[list[DataProductContract], list[ContractError]]:
    """The contracts that load and that the folder's platform policy grants, sorted by name,
    and every problem of those that do not."""
    contracts: list[DataProductContract] = []
    problems: list[ContractError] = []
    seen: dict[str, Path] = {}
    root = directory or PRODUCTS_DIR
    for path in contract_files(root):
        loaded = _contract_or_problems(path, root)
        if loaded is None:
            continue
        if isinstance(loaded, list):
            problems += loaded
        elif loaded.name in seen:
            problems.append(
                ContractError(
                    path, "name", f"{loaded.name!r} is already defined by {seen[loaded.name]}"
                )
            )
        else:
            seen[loaded.name] = path
            contracts.append(loaded)
    policy = load_policy(root, settings or current_settings())
    granted, refused = _apply_policy(policy, contracts, seen)
    return sorted(granted, key=lambda c: c.name), problems + refused


def _apply_policy(
    policy: PlatformPolicy, contracts: list[DataProductContract], paths: dict[str, Path]
) -> tuple[list[DataProductContract], list[ContractError]]:
    """The contracts whose sources the platform policy grants their domains and no other
    contract shares, and a problem for each of the others."""
    granted: list[DataProductContract] = []
    problems: list[ContractError] = []
    for contract in contracts:
        refusal = policy.refusal(contract)
        if refusal:
            problems.append(ContractError(paths[contract.name], refusal.field, refusal.problem))
        else:
            granted.append(contract)
    shared: set[str] = set()
    for first, second in overlapping_landings(granted):
        for this, other in ((first, second), (second, first)):
            shared.add(this.name)
            where, theirs = this.source.where(this), other.source.where(other)
            problem = (
                f"{where} overlaps {theirs}, the landing prefix of {other.name} "
                f"({paths[other.name]}): a landing prefix belongs to exactly one product"
            )
            problems.append(ContractError(paths[this.name], "source.prefix", problem))
    return [c for c in granted if c.name not in shared], problems


@dataclass
class Domain:
    """A domain's contracts that load, and the problems of its files that do not."""

    name: str
    contracts: list[DataProductContract] = field(default_factory=list)
    problems: list[ContractError] = field(default_factory=list)


def domains(directory: Path | None = None, settings: Settings | None = None) -> dict[str, Domain]:
    """Every domain of the contracts folder, by name: what each code location serves, whether
    its products lie in `<domain>/<product>/defs.yaml` folders or in plain contract files."""
    root = directory or PRODUCTS_DIR
    contracts, problems = check_contracts(root, settings)
    found: dict[str, Domain] = {}
    for contract in contracts:
        found.setdefault(contract.domain, Domain(contract.domain)).contracts.append(contract)
    for problem in problems:
        name = domain_name(problem.path, root)
        found.setdefault(name, Domain(name)).problems.append(problem)
    return dict(sorted(found.items()))


def load_contracts(
    directory: Path | None = None, settings: Settings | None = None
) -> list[DataProductContract]:
    """All contracts in `directory` (default: the shipped products), sorted by name; any
    problem in any file raises ContractErrors listing all of them."""
    contracts, problems = check_contracts(directory, settings)
    if problems:
        raise ContractErrors(problems)
    return contracts
