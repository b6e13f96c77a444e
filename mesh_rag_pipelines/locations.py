"""One Dagster code location per domain, each loading only its own domain's products.

`workspace.yaml` names a domain as the attribute of this module
(`python_module: {module_name: mesh_rag_pipelines.locations, attribute: people}`); the domain is
the folder of that name in the contracts folder. A broken contract fails only its own domain's
location: the others load, run and show in the UI.
"""

import dagster as dg

from mesh_rag_pipelines import settings
from mesh_rag_pipelines.contracts import load_contracts
from mesh_rag_pipelines.contracts.loader import PRODUCTS_DIR
from mesh_rag_pipelines.defs.product import platform_definitions


def domains() -> list[str]:
    root = settings.contracts_dir() or PRODUCTS_DIR
    return sorted(
        folder.name
        for folder in root.iterdir()
        if folder.is_dir() and any(folder.rglob("defs.yaml"))
    )


def domain_definitions(domain: str) -> dg.Definitions:
    root = settings.contracts_dir() or PRODUCTS_DIR
    return platform_definitions(load_contracts(root / domain))


def __getattr__(name: str) -> dg.Definitions:
    if name.startswith("__") or name not in domains():
        raise AttributeError(f"no domain {name!r} in the contracts folder; domains: {domains()}")
    return domain_definitions(name)
