"""The service's request and response bodies (its OpenAPI document is generated from these)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_K = 100
MAX_QUERY_CHARS = 4000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SearchRequest(_Strict):
    """What the CLI's retrieval request takes: the query, which products (by name, domain,
    document type, tags; all the caller may read if none), and k chunks or documents."""

    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS)
    products: list[str] = []
    domains: list[str] = []
    types: list[str] = []
    tags: list[str] = []
    k: int = Field(default=10, ge=1, le=MAX_K)
    unit: Literal["chunks", "documents"] = "chunks"


class SearchHit(BaseModel):
    product: str
    doc_id: str
    doc_version: int
    chunk_no: int
    index_version: str
    score: float
    title: str | None
    section: str
    source_updated_at: datetime | None
    text: str
    metadata: dict[str, Any]


class SearchResponse(BaseModel):
    response_id: uuid.UUID
    products: list[str]  # the products searched
    results: list[SearchHit]
    abstention: str | None  # why nothing came back, when nothing did


class CitationOut(BaseModel):
    number: int
    product: str
    doc_id: str
    index_version: str
    chunk_no: int
    title: str | None
    score: float


class AnswerResponse(BaseModel):
    response_id: uuid.UUID
    products: list[str]
    text: str
    citations: list[CitationOut]
    model: str | None  # None: extractive (the cited passages), or an abstention
    abstention: str | None


class ProductStatusOut(BaseModel):
    in_sync: bool
    waiting_changes: int
    unindexed_documents: int
    oldest_change: datetime | None
    judged_at: datetime


class ProductOut(BaseModel):
    name: str
    domain: str
    owner: str
    description: str
    document_type: str
    tags: list[str]
    freshness_sla: str
    live_index_version: str | None  # None: nothing serves the product yet
    status: ProductStatusOut | None  # None: its freshness was never judged


class ProductsResponse(BaseModel):
    products: list[ProductOut]


class FeedbackRequest(_Strict):
    response_id: uuid.UUID
    helpful: bool
    right_results: list[str] = Field(default=[], max_length=MAX_K)  # "product/doc_id"
    comment: str | None = Field(default=None, max_length=MAX_QUERY_CHARS)


class FeedbackResponse(BaseModel):
    recorded: bool


class Problem(BaseModel):
    detail: str
