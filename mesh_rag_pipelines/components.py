"""A data product as a Dagster Component: `<domain>/<product>/defs.yaml`, whose `attributes:` is
the product's contract.

`dg scaffold defs DataProduct <domain>/<product>` writes one from a template, `dg check yaml`
validates a defs.yaml against the contract's schema, and `dg list defs` shows what the products
build. The definitions are the same however a contract is found: the CLI, retrieval and the
benchmarks read the same files with the plain contract loader, without Dagster.
"""

from typing import Any

import dagster as dg
from pydantic import BaseModel

from mesh_rag_pipelines.contracts import ContractError, ContractErrors
from mesh_rag_pipelines.contracts.loader import COMPONENT_FILE, contract_from_attributes
from mesh_rag_pipelines.contracts.model import DataProductContract
from mesh_rag_pipelines.governance.policy import load_policy
from mesh_rag_pipelines.orchestration.product import product_definitions
from mesh_rag_pipelines.settings import Settings

TEMPLATE = """\
type: mesh_rag_pipelines.components.DataProduct
attributes:
  name: {name}
  domain: {domain}
  owner: {owner}
  description: >
    What the product holds and who maintains it (a sentence or two).
  document_type: note
  source:
    kind: files                   # postgres_table | files | s3_landing
    path: documents               # a folder of markdown files beside this file
    pattern: "*.md"
  schema:
    id_field: path
    version_field: revision
    updated_at_field: modified_at
    title_field: title
    text_fields: [body]
  acl_groups: [employees]
  freshness:
    sla: 1d
    poll_interval: 1m
  chunking: {{name: markdown_sections, version: 1, max_words: 180, overlap_words: 20}}
  embedding: {{provider: local, model: all-MiniLM-L6-v2, dimensions: 384, distance: cosine}}
"""


class ScaffoldParams(BaseModel):
    owner: str = "team:change-me"


class DataProductScaffolder(dg.Scaffolder[ScaffoldParams]):
    """Writes `<domain>/<product>/defs.yaml` (names from the target path) and an empty
    `documents/` folder for the template's files source."""

    @classmethod
    def get_scaffold_params(cls) -> type[ScaffoldParams]:
        return ScaffoldParams

    def scaffold(self, request: dg.ScaffoldRequest[ScaffoldParams]) -> None:
        target = request.target_path
        (target / "documents").mkdir(parents=True, exist_ok=True)
        owner = request.params.owner if request.params else ScaffoldParams().owner
        text = TEMPLATE.format(name=target.name, domain=target.parent.name, owner=owner)
        (target / COMPONENT_FILE).write_text(text)


@dg.scaffold_with(DataProductScaffolder)
class DataProduct(dg.Component):
    """A data-mesh data product: its contract as attributes; builds the product's assets,
    checks, jobs, sensors and schedules."""

    def __init__(self, contract: DataProductContract):
        self.contract = contract

    @classmethod
    def get_model_cls(cls) -> type[DataProductContract]:
        return DataProductContract

    @classmethod
    def load(cls, attributes: Any, context: dg.ComponentLoadContext) -> "DataProduct":
        """Through the loader every other path uses, and the platform policy that governs the
        folder (the nearest `platform_policy.yaml` at or above it)."""
        path = context.path / COMPONENT_FILE
        if isinstance(attributes, BaseModel):  # dg hands over its parse of get_model_cls()
            attributes = attributes.model_dump(mode="json", by_alias=True, exclude_unset=True)
        loaded = contract_from_attributes(attributes, path)
        if isinstance(loaded, list):
            raise ContractErrors(loaded)
        refusal = load_policy(context.path, Settings.from_env()).refusal(loaded)
        if refusal:
            raise ContractErrors([ContractError(path, refusal.field, refusal.problem)])
        return cls(loaded)

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        return product_definitions(self.contract)
