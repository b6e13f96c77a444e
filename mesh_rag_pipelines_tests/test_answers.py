"""Grounded answers: the chat model gets only passages the caller may read, the answer cites
them (product, document, version, chunk), and with nothing to go on no model is called."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine

from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.embedding import Embedder
from mesh_rag_pipelines.retrieval import Caller, search
from mesh_rag_pipelines.retrieval.answer import OpenAIChat, answer
from mesh_rag_pipelines.retrieval.request import RetrievalRequest
from mesh_rag_pipelines.sources.base import SourceContext
from mesh_rag_pipelines_tests.helpers import sync_all
from mesh_rag_pipelines_tests.openai_compatible_server import OpenAICompatibleServer

QUESTION = "How many weeks of fully paid leave does a primary caregiver get?"


@pytest.fixture
def policies(
    contracts: dict[str, DataProductContract], access: SourceContext, minilm: Embedder
) -> DataProductContract:
    sync_all(contracts["hr_policies"], access, minilm)
    return contracts["hr_policies"]


@pytest.fixture
def chat_server() -> Iterator[OpenAICompatibleServer]:
    server = OpenAICompatibleServer(chat_reply="Sixteen weeks, fully paid [2], after a birth [1].")
    server.start()
    yield server
    server.stop()


def test_an_answer_cites_the_passages_it_was_given(
    policies: DataProductContract, engine: Engine, chat_server: OpenAICompatibleServer
) -> None:
    staff = Caller.of(["employees"])
    chat = OpenAIChat("answer-model", "test-key", chat_server.base_url)

    result = answer(engine, [policies], RetrievalRequest(QUESTION, staff, k=3), chat)

    hits = search(engine, [policies], QUESTION, staff, k=3, unit="documents")
    assert (result.text, result.model, result.abstention) == (
        chat_server.chat_reply,
        "answer-model",
        None,
    )
    assert [(c.number, c.doc_id, c.chunk_no, c.index_version) for c in result.citations] == [
        (n, h.doc_id, h.chunk_no, h.index_version)
        for n, h in enumerate(hits, start=1)
        if n in (1, 2)
    ]
    [request] = chat_server.chat_requests
    prompt = request["messages"][1]["content"]
    assert [int(n) for n in re.findall(r"^\[(\d+)\] ", prompt, re.MULTILINE)] == [1, 2, 3]
    assert all(h.text in prompt for h in hits)


def test_with_nothing_to_go_on_the_answer_abstains_without_calling_the_model(
    policies: DataProductContract, engine: Engine, chat_server: OpenAICompatibleServer
) -> None:
    chat = OpenAIChat("answer-model", "test-key", chat_server.base_url)
    outsider = RetrievalRequest(QUESTION, Caller.of(["contractors"]))

    result = answer(engine, [policies], outsider, chat)

    assert result.text == "" and result.citations == []
    assert result.abstention == (
        "none of the matching products ['hr_policies'] is shared with the caller's groups "
        "['contractors']"
    )
    assert chat_server.requests == []


def test_without_a_chat_endpoint_the_answer_is_the_cited_passages(
    policies: DataProductContract, engine: Engine, minilm: Any
) -> None:
    result = answer(engine, [policies], RetrievalRequest(QUESTION, Caller.of(["hr"]), k=2))

    assert result.model is None and len(result.citations) == 2
    assert result.citations[0].doc_id == "parental-leave.md"
    assert result.text.startswith("[1] ") and "\n\n[2] " in result.text
