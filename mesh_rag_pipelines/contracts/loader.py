"""Load contracts from YAML files, failing with the file, the field and what is wrong."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import yaml
from pydantic import ValidationError

from mesh_rag_pipelines.contracts.model import DataProductContract

PRODUCTS_DIR = Path(__file__).resolve().parent.parent / "products"


class ContractError(ValueError):
    """A contract file that cannot become a pipeline."""

    def __init__(self, path: Path, field: str, problem: str):
        self.path, self.field, self.problem = path, field, problem
        super().__init__(f"{path}: field '{field}': {problem}")


def _field_path(loc: Iterable[int | str]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts[-1] = f"{parts[-1]}[{item}]" if parts else f"[{item}]"
        else:
            parts.append(item)
    return ".".join(parts) or "<root>"


def load_contract(path: Path) -> DataProductContract:
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ContractError(path, "<yaml>", f"not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ContractError(path, "<root>", "must be a mapping of contract fields")
    try:
        contract = DataProductContract.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        problem = "missing required field" if first["type"] == "missing" else first["msg"]
        problem = problem.removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            problem = "unknown field (check the spelling against the contract reference)"
        raise ContractError(path, _field_path(first["loc"]), problem) from exc
    if contract.name != path.stem:
        raise ContractError(
            path, "name", f"{contract.name!r} must equal the file name {path.stem!r}"
        )
    contract._origin = path.resolve()
    return contract


def load_contracts(directory: Path | None = None) -> list[DataProductContract]:
    """All contracts in `directory` (default: the shipped products), sorted by name."""
    directory = directory or PRODUCTS_DIR
    return [load_contract(path) for path in sorted(directory.glob("*.yaml"))]
