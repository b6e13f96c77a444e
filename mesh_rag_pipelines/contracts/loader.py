"""Load contracts from YAML files, failing with the file, the field and what is wrong.

Every problem of every file is reported at once: a team fixing its contract sees the whole list,
and one file's problems never hide another's.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from mesh_rag_pipelines.contracts.model import DataProductContract, FieldProblem

PRODUCTS_DIR = Path(__file__).resolve().parent.parent / "products"
CONTRACT_PATTERNS = ("*.yaml", "*.yml")


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
        cause = (error.get("ctx") or {}).get("error")
        if isinstance(cause, FieldProblem):
            loc.append(cause.field)
        if error["type"] == "missing":
            problem = "missing required field"
        elif error["type"] == "extra_forbidden":
            problem = "unknown field (check the spelling against the contract reference)"
        else:
            problem = error["msg"].removeprefix("Value error, ")
        found.append(ContractError(path, _field_path(loc), problem))
    return found


def _contract_or_problems(path: Path) -> DataProductContract | list[ContractError]:
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        return [ContractError(path, "<yaml>", f"not valid YAML: {exc}")]
    if not isinstance(raw, dict):
        return [ContractError(path, "<root>", "must be a mapping of contract fields")]
    try:
        contract = DataProductContract.model_validate(raw)
    except ValidationError as exc:
        return _problems(path, exc)
    if contract.name != path.stem:
        return [
            ContractError(path, "name", f"{contract.name!r} must equal the file name {path.stem!r}")
        ]
    contract._origin = path.resolve()
    return contract


def load_contract(path: Path) -> DataProductContract:
    """One contract; its first problem is raised as a ContractError."""
    loaded = _contract_or_problems(path)
    if isinstance(loaded, list):
        raise loaded[0]
    return loaded


def contract_files(directory: Path) -> list[Path]:
    return sorted(path for pattern in CONTRACT_PATTERNS for path in directory.glob(pattern))


def check_contracts(
    directory: Path | None = None,
) -> tuple[list[DataProductContract], list[ContractError]]:
    """The contracts that load, sorted by name, and every problem of those that do not."""
    contracts: list[DataProductContract] = []
    problems: list[ContractError] = []
    seen: dict[str, Path] = {}
    for path in contract_files(directory or PRODUCTS_DIR):
        loaded = _contract_or_problems(path)
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
    return sorted(contracts, key=lambda c: c.name), problems


def load_contracts(directory: Path | None = None) -> list[DataProductContract]:
    """All contracts in `directory` (default: the shipped products), sorted by name; any
    problem in any file raises ContractErrors listing all of them."""
    contracts, problems = check_contracts(directory)
    if problems:
        raise ContractErrors(problems)
    return contracts
