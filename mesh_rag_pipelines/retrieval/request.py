"""The retrieval contract: which products a request may reach, what comes back, and an explicit
abstention, with its reason, when nothing qualifies.

Products are selected first, by the metadata their contracts declare (domain, document type,
tags) and by whether they are shared with one of the caller's groups; only those are searched.
The search then applies, in the database, the caller's ACL and each contract's rules (maximum
age, allowed types) and keeps hits at or above each contract's minimum score.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Engine

from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.embedding import Embedder
from mesh_rag_pipelines.retrieval.search import (
    Caller,
    RetrievedChunk,
    SearchTimings,
    Unit,
    search,
)


@dataclass(frozen=True)
class RetrievalRequest:
    query: str
    caller: Caller
    k: int = 10
    unit: Unit = "documents"
    products: tuple[str, ...] = ()
    domains: tuple[str, ...] = ()
    document_types: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class RetrievalResult:
    hits: list[RetrievedChunk]
    products: list[str] = field(default_factory=list)  # the products searched
    abstention: str | None = None  # why nothing came back, when nothing did


def select_products(
    contracts: list[DataProductContract], request: RetrievalRequest
) -> tuple[list[DataProductContract], str | None]:
    """The products a request may search, or why there is none."""
    wanted = [
        c
        for c in contracts
        if (not request.products or c.name in request.products)
        and (not request.domains or c.domain in request.domains)
        and (not request.document_types or c.document_type in request.document_types)
        and (not request.tags or set(request.tags) <= set(c.tags))
    ]
    if not wanted:
        asked = {
            "products": request.products,
            "domains": request.domains,
            "document types": request.document_types,
            "tags": request.tags,
        }
        described = "; ".join(f"{k} {list(v)}" for k, v in asked.items() if v)
        return [], f"no data product matches {described}"
    if request.caller.operator:
        return wanted, None
    shared = [c for c in wanted if set(c.acl_groups) & set(request.caller.groups)]
    if not shared:
        names = [c.name for c in wanted]
        return [], (
            f"none of the matching products {names} is shared with the caller's groups "
            f"{list(request.caller.groups)}"
        )
    return shared, None


def retrieve(
    engine: Engine,
    contracts: list[DataProductContract],
    request: RetrievalRequest,
    embedders: dict[str, Embedder] | None = None,
    timings: SearchTimings | None = None,
) -> RetrievalResult:
    chosen, abstention = select_products(contracts, request)
    if abstention:
        return RetrievalResult([], [], abstention)
    names = [c.name for c in chosen]
    hits = search(
        engine,
        chosen,
        request.query,
        request.caller,
        k=request.k,
        unit=request.unit,
        embedders=embedders,
        timings=timings,
    )
    if request.document_types:
        hits = [h for h in hits if h.document_type in request.document_types]
    if not hits:
        rules = "; ".join(
            f"{c.name}: min_score {c.retrieval.min_score}, max_age {c.retrieval.max_age}, "
            f"types {c.retrieval.allowed_document_types or 'any'}"
            for c in chosen
        )
        return RetrievalResult([], names, f"no passage of {names} qualifies ({rules})")
    return RetrievalResult(hits, names)
