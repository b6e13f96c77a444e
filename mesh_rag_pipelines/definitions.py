"""The code location of every product in the contracts folder (MESH_RAG_CONTRACTS_DIR, or the
shipped products): what the CLI runs, and a domain's own code server when that folder is the
domain's repository. `locations.py` serves the shipped products one domain per location."""

import dagster as dg

from mesh_rag_pipelines.contracts import load_contracts
from mesh_rag_pipelines.orchestration.product import platform_definitions
from mesh_rag_pipelines.settings import Settings


@dg.definitions
def defs() -> dg.Definitions:
    settings = Settings.from_env()
    return platform_definitions(load_contracts(settings.contracts_dir, settings))
