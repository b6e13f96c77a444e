"""One Dagster code location per domain, each loading only its own domain's products.

`workspace.yaml` (and the workspace `mesh-rag ui` writes for the contracts folder in use) names
a domain as the attribute of this module
(`python_module: {module_name: mesh_rag_pipelines.locations, attribute: people}`). A domain's
products are those of the folder of that name, or the plain contract files declaring it: the
same loader reads them for the CLI. A broken contract fails only its own domain's location: the
others load, run and show in the UI.
"""

import dagster as dg

from mesh_rag_pipelines.contracts import ContractErrors
from mesh_rag_pipelines.contracts.loader import domains
from mesh_rag_pipelines.orchestration.product import platform_definitions
from mesh_rag_pipelines.settings import Settings


def domain_definitions(name: str) -> dg.Definitions:
    settings = Settings.from_env()
    found = domains(settings.contracts_dir, settings)
    if name not in found:
        raise AttributeError(f"no domain {name!r} in the contracts folder; domains: {list(found)}")
    domain = found[name]
    if domain.problems:
        raise ContractErrors(domain.problems)
    return platform_definitions(domain.contracts, domain=name)


def __getattr__(name: str) -> dg.Definitions:
    if name.startswith("__"):
        raise AttributeError(name)
    return domain_definitions(name)
