"""What one command works with: the settings, read once when it starts, and the contracts that
load. A broken contract file is named once on stderr and left out, so one team's typo never
takes the command line down for the others; a command asked about that very product refuses,
naming the file, field and problem."""

from __future__ import annotations

import sys
from functools import cached_property
from pathlib import Path

from mesh_rag_pipelines.contracts import ContractError, DataProductContract, check_contracts
from mesh_rag_pipelines.contracts.loader import PRODUCTS_DIR, domain_name, product_name
from mesh_rag_pipelines.settings import Settings


class Session:
    def __init__(self, settings: Settings):
        self.settings = settings

    @property
    def contracts_root(self) -> Path:
        return self.settings.contracts_dir or PRODUCTS_DIR

    @cached_property
    def _loaded(self) -> tuple[list[DataProductContract], list[ContractError]]:
        contracts, problems = check_contracts(self.settings.contracts_dir, self.settings)
        for path in sorted({problem.path for problem in problems}):
            name, domain = product_name(path), domain_name(path, self.contracts_root)
            print(
                f"warning: product {name} (domain {domain}) is left out: its contract is broken "
                "(`mesh-rag check` lists every problem):",
                file=sys.stderr,
            )
            for problem in problems:
                if problem.path == path:
                    print(f"  {problem}", file=sys.stderr)
        return contracts, problems

    def contracts(self) -> list[DataProductContract]:
        return self._loaded[0]

    def broken_files(self) -> list[Path]:
        return sorted({problem.path for problem in self._loaded[1]})

    def contract(self, product: str) -> DataProductContract:
        contracts, problems = self._loaded
        for found in contracts:
            if found.name == product:
                return found
        broken = [str(p) for p in problems if product_name(p.path) == product]
        if broken:
            raise SystemExit(f"product {product}'s contract is broken:\n  " + "\n  ".join(broken))
        known = ", ".join(sorted(c.name for c in contracts))
        raise SystemExit(f"unknown product {product!r}; known: {known}")


def claimed_os_user(command: str) -> str:
    """Who runs `mesh-rag COMMAND`, as the machine says: the login name the environment claims
    (LOGNAME, USER, ...: anyone can set them) and the account of the process's user id; recorded
    beside the database role, which the database verified."""
    import getpass
    import os
    import pwd

    uid = os.getuid()
    try:
        account = pwd.getpwuid(uid).pw_name
    except KeyError:
        account = "no account"
    return (
        f"os user {getpass.getuser()} (claimed by the environment), "
        f"process account {account} (uid {uid}), via mesh-rag {command}"
    )
