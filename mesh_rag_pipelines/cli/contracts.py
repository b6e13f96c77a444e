"""The contracts a command works on: every one that loads. A broken contract file is named once
on stderr and left out, so one team's typo never takes the command line down for the others;
a command asked about that very product refuses, naming the file, field and problem."""

from __future__ import annotations

import sys
from functools import cache
from pathlib import Path

from mesh_rag_pipelines import settings
from mesh_rag_pipelines.contracts import ContractError, DataProductContract, check_contracts
from mesh_rag_pipelines.contracts.loader import PRODUCTS_DIR, domain_name, product_name


@cache
def _loaded() -> tuple[list[DataProductContract], list[ContractError]]:
    contracts, problems = check_contracts(settings.contracts_dir())
    root = settings.contracts_dir() or PRODUCTS_DIR
    for path in sorted({problem.path for problem in problems}):
        name, domain = product_name(path), domain_name(path, root)
        print(
            f"warning: product {name} (domain {domain}) is left out: its contract is broken "
            "(`mesh-rag check` lists every problem):",
            file=sys.stderr,
        )
        for problem in problems:
            if problem.path == path:
                print(f"  {problem}", file=sys.stderr)
    return contracts, problems


def loaded_contracts() -> list[DataProductContract]:
    return _loaded()[0]


def broken_files() -> list[Path]:
    return sorted({problem.path for problem in _loaded()[1]})


def contract(product: str) -> DataProductContract:
    contracts, problems = _loaded()
    for found in contracts:
        if found.name == product:
            return found
    broken = [str(p) for p in problems if product_name(p.path) == product]
    if broken:
        raise SystemExit(f"product {product}'s contract is broken:\n  " + "\n  ".join(broken))
    known = ", ".join(sorted(c.name for c in contracts))
    raise SystemExit(f"unknown product {product!r}; known: {known}")
