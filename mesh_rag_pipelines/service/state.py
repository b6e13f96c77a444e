"""What the service holds while it runs: the contracts, the serving role's engine, the query
models (loaded once, at startup) and who may call."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlalchemy import Engine, text

from mesh_rag_pipelines.contracts import DataProductContract, check_contracts
from mesh_rag_pipelines.embedding import Embedder
from mesh_rag_pipelines.embedding.batching import BatchingEmbedder
from mesh_rag_pipelines.embedding.embedder import query_embedder_for
from mesh_rag_pipelines.governance.pii import query_masker
from mesh_rag_pipelines.retrieval.answer import ChatModel, OpenAIChat
from mesh_rag_pipelines.service.identity import Authenticator, OidcConfig
from mesh_rag_pipelines.service.metrics import ServiceMetrics
from mesh_rag_pipelines.settings import ANSWER_MODEL, OPENAI_API_KEY, OPENAI_BASE_URL, Settings
from mesh_rag_pipelines.store.index_versions import live_versions

log = logging.getLogger("mesh_rag.service")


@dataclass
class ServiceState:
    settings: Settings
    serving: Engine
    contracts: list[DataProductContract]
    authenticator: Authenticator
    metrics: ServiceMetrics
    chat: ChatModel | None = None
    embedders: dict[str, Embedder] = field(default_factory=dict)

    def contracts_named(self, names: list[str] | tuple[str, ...]) -> list[DataProductContract]:
        return [c for c in self.contracts if c.name in names]

    def load_models(self) -> None:
        """Every query model a live version or a contract names, loaded now rather than on a
        caller's first request; and the PII recognizers that mask queries."""
        specs = [c.embedding for c in self.contracts]
        specs += [v.embedding_spec for v in live_versions(self.serving, self.names)]
        for spec in specs:
            if spec.model_id not in self.embedders:
                embedder = BatchingEmbedder(query_embedder_for(spec))
                embedder.embed(["warm up"])
                self.embedders[spec.model_id] = embedder
        # Text the PII analyzer must look at: its import and recognizers load now.
        query_masker(self.contracts).text("warm up: 555-0100, ops@example.com")

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.contracts]

    def ready(self) -> str | None:
        """Why the service cannot answer yet, or None when it can."""
        try:
            with self.serving.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:  # any failure to reach the store means not ready
            return f"the store is not reachable: {type(exc).__name__}"
        if self.contracts and not self.embedders:
            return "the query models are not loaded"
        return None


def load_state(settings: Settings, serving: Engine, metrics: ServiceMetrics) -> ServiceState:
    contracts, problems = check_contracts(settings.contracts_dir, settings)
    for problem in problems:
        log.warning("a product is left out, its contract is broken: %s", problem)
    chat: ChatModel | None = None
    model = settings.get(ANSWER_MODEL)
    if model:
        key = settings.required(OPENAI_API_KEY, f"{ANSWER_MODEL} is set: the chat model's key")
        chat = OpenAIChat(model, key, settings.get(OPENAI_BASE_URL))
    return ServiceState(
        settings=settings,
        serving=serving,
        contracts=contracts,
        authenticator=Authenticator(serving, OidcConfig.from_settings(settings)),
        metrics=metrics,
        chat=chat,
    )
