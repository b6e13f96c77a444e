"""Grounded answers: a question goes to a chat model with only the passages the caller may read
and the contracts let through, and comes back with citations (product, document, index version,
chunk). With no qualifying passage the answer is an abstention and no model is called. With no
chat endpoint configured the answer is extractive: the cited passages themselves.

The question reaches the chat model (and, for retrieval, the embedding model) masked: the
platform's default PII types (governance.pii.QUERY_ENTITIES) whatever the products, plus every
type a searched product masks, as placeholders.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import Engine

from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.embedding import Embedder
from mesh_rag_pipelines.governance.pii import query_masker
from mesh_rag_pipelines.retrieval.request import RetrievalRequest, retrieve
from mesh_rag_pipelines.retrieval.search import RetrievedChunk, SearchTimings

INSTRUCTIONS = (
    "Answer the question using only the numbered passages. Cite every passage you use as [n]. "
    "If the passages do not contain the answer, say that you cannot answer from them."
)
_CITATION = re.compile(r"\[(\d+)\]")


@dataclass(frozen=True)
class Citation:
    number: int
    product: str
    doc_id: str
    index_version: str
    chunk_no: int
    title: str | None
    score: float
    metadata: dict[str, Any]

    @classmethod
    def of(cls, number: int, hit: RetrievedChunk) -> Citation:
        return cls(
            number,
            hit.product,
            hit.doc_id,
            hit.index_version,
            hit.chunk_no,
            hit.title,
            hit.score,
            hit.metadata,
        )


@dataclass(frozen=True)
class Answer:
    text: str
    citations: list[Citation]
    abstention: str | None = None
    model: str | None = None  # None: extractive, no model was asked


class ChatModel(Protocol):
    name: str

    def complete(self, system: str, user: str) -> str: ...


class OpenAIChat:
    """Any OpenAI-compatible chat-completions endpoint."""

    def __init__(self, model: str, api_key: str, base_url: str | None, timeout: float = 60.0):
        from openai import OpenAI

        self.name = model
        self._client: Any = OpenAI(api_key=api_key, base_url=base_url, timeout=timeout)

    def complete(self, system: str, user: str) -> str:
        reply = self._client.chat.completions.create(
            model=self.name,
            messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
            temperature=0,
        )
        return str(reply.choices[0].message.content or "")


def answer(
    engine: Engine,
    contracts: list[DataProductContract],
    request: RetrievalRequest,
    chat: ChatModel | None = None,
    embedders: dict[str, Embedder] | None = None,
    timings: SearchTimings | None = None,
) -> Answer:
    found = retrieve(engine, contracts, request, embedders, timings)
    if found.abstention:
        return Answer("", [], found.abstention)
    passages = list(enumerate(found.hits, start=1))
    if chat is None:
        text = "\n\n".join(f"[{n}] {hit.text}" for n, hit in passages)
        return Answer(text, [Citation.of(n, hit) for n, hit in passages])
    masker = query_masker([c for c in contracts if c.name in found.products])
    context = "\n\n".join(f"[{n}] {hit.text}" for n, hit in passages)
    reply = chat.complete(
        INSTRUCTIONS, f"Passages:\n{context}\n\nQuestion: {masker.text(request.query)}"
    )
    cited = {int(number) for number in _CITATION.findall(reply)}
    citations = [Citation.of(n, hit) for n, hit in passages if n in cited]
    return Answer(reply, citations, model=chat.name)
