"""The retrieval service's query log: one row per request answered, the query masked like
documents are. The service writes it as the serving role (INSERT only, migration 0007); reading
it, and removing rows older than the retention, is the owner's (monitoring, curation)."""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from datetime import datetime

from sqlalchemy import Engine, delete, insert

from mesh_rag_pipelines.store.schema import QueryLog


@dataclass(frozen=True)
class LoggedRequest:
    response_id: uuid.UUID
    subject: str  # the verified identity's subject (a token's `sub`, an API key's name)
    identity_kind: str  # "oidc" or "api_key"
    route: str  # "search" or "answer"
    query_masked: str
    products: list[str]  # the products searched
    index_versions: list[str]  # the index versions that served them
    k: int
    unit: str
    embed_ms: float | None
    search_ms: float | None
    total_ms: float
    result_ids: list[str]  # `product/doc_id#chunk_no`, in rank order
    abstention: str | None
    status: int


def record_request(engine: Engine, entry: LoggedRequest) -> None:
    """Inserted inline (no RETURNING, no sequence read first): the serving role may only
    insert."""
    with engine.begin() as conn:
        conn.execute(insert(QueryLog).inline().values(**asdict(entry)))


def purge_before(engine: Engine, cutoff: datetime) -> int:
    """Remove the rows older than `cutoff` (the retention); how many went."""
    with engine.begin() as conn:
        return conn.execute(delete(QueryLog).where(QueryLog.at < cutoff)).rowcount
