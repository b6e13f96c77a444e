"""Retrieval enforces the caller's ACL groups and the contract's rules in the query itself."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine

from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.contracts.model import RetrievalSpec
from mesh_rag_pipelines.embedding import Embedder
from mesh_rag_pipelines.retrieval import Caller, search
from mesh_rag_pipelines.retrieval.request import RetrievalRequest, retrieve
from mesh_rag_pipelines.sources.base import SourceContext
from mesh_rag_pipelines_tests.helpers import seed_and_sync

QUERY = "my tent arrived damaged and I want a refund or a replacement"


@pytest.fixture
def built(
    contracts: dict[str, DataProductContract],
    access: SourceContext,
    engine: Engine,
    minilm: Embedder,
    s3: Any,
) -> list[DataProductContract]:
    products = [contracts["hr_policies"], contracts["support_tickets"]]
    seed_and_sync(products, engine, s3, access, minilm)
    return products


EVERYONE = Caller.of(["employees", "hr", "support_agents"])


def _products(
    engine: Engine,
    contracts: list[DataProductContract],
    minilm: Embedder,
    caller: Caller = EVERYONE,
) -> set[str]:
    hits = search(engine, contracts, QUERY, caller, k=20, embedders={minilm.model_id: minilm})
    return {hit.product for hit in hits}


def test_caller_sees_only_products_shared_with_one_of_its_groups(
    built: list[DataProductContract], engine: Engine, minilm: Embedder
) -> None:
    assert _products(engine, built, minilm) == {"hr_policies", "support_tickets"}
    agents, staff = Caller.of(["support_agents"]), Caller.of(["employees"])
    assert _products(engine, built, minilm, agents) == {"support_tickets"}
    assert _products(engine, built, minilm, staff) == {"hr_policies"}
    assert _products(engine, built, minilm, Caller.of(["contractors"])) == set()
    assert _products(engine, built, minilm, Caller()) == set()  # no caller, no rows


def test_maximum_age_filters_out_older_documents(
    built: list[DataProductContract], engine: Engine, minilm: Embedder
) -> None:
    policies, tickets = built  # the sample tickets were updated in November 2026 or earlier
    recent_only = tickets.model_copy(update={"retrieval": RetrievalSpec(max_age="1d")})
    generous = tickets.model_copy(update={"retrieval": RetrievalSpec(max_age="3650d")})
    agents = Caller.of(["support_agents"])
    assert _products(engine, [policies, recent_only], minilm, agents) == set()
    assert _products(engine, [policies, generous], minilm, agents) == {"support_tickets"}


def test_only_allowed_document_types_are_returned(
    built: list[DataProductContract], engine: Engine, minilm: Embedder
) -> None:
    policies, tickets = built
    faq_only = tickets.model_copy(
        update={"retrieval": RetrievalSpec(allowed_document_types=["faq"])}
    )
    assert _products(engine, [policies, faq_only], minilm) == {"hr_policies"}


def test_min_score_drops_weaker_passages(
    built: list[DataProductContract], engine: Engine, minilm: Embedder
) -> None:
    policies, tickets = built
    scores = [
        hit.score
        for hit in search(
            engine, [tickets], QUERY, EVERYONE, k=10, embedders={minilm.model_id: minilm}
        )
    ]
    threshold = sorted(scores)[len(scores) // 2]
    strict = tickets.model_copy(update={"retrieval": RetrievalSpec(min_score=threshold)})
    kept = search(engine, [strict], QUERY, EVERYONE, k=10, embedders={minilm.model_id: minilm})
    assert [h.score for h in kept] == [s for s in scores if s >= threshold]


def test_k_can_count_documents(
    built: list[DataProductContract], engine: Engine, minilm: Embedder
) -> None:
    policies, _ = built
    staff = Caller.of(["employees"])
    chunks = search(engine, [policies], "leave", staff, k=12, embedders={minilm.model_id: minilm})
    documents = search(
        engine,
        [policies],
        "leave",
        staff,
        k=12,
        unit="documents",
        embedders={minilm.model_id: minilm},
    )
    assert (
        len({h.doc_id for h in chunks}) < 12 == len(documents) == len({h.doc_id for h in documents})
    )


def _request(query: str, caller: Caller, **filters: Any) -> RetrievalRequest:
    return RetrievalRequest(query=query, caller=caller, k=5, **filters)


def test_requests_reach_only_products_whose_contract_matches_and_abstain_with_the_reason(
    built: list[DataProductContract], engine: Engine, minilm: Embedder
) -> None:
    embedders = {minilm.model_id: minilm}
    found = retrieve(engine, built, _request(QUERY, EVERYONE, domains=("people",)), embedders)
    assert found.products == ["hr_policies"] and {h.product for h in found.hits} == {"hr_policies"}
    found = retrieve(
        engine, built, _request(QUERY, EVERYONE, document_types=("ticket",)), embedders
    )
    assert found.products == ["support_tickets"]

    nothing = retrieve(engine, built, _request(QUERY, EVERYONE, domains=("finance",)), embedders)
    assert (nothing.hits, nothing.abstention) == ([], "no data product matches domains ['finance']")
    outsider = retrieve(engine, built, _request(QUERY, Caller.of(["contractors"])), embedders)
    assert outsider.hits == []
    assert outsider.abstention == (
        "none of the matching products ['hr_policies', 'support_tickets'] is shared with the "
        "caller's groups ['contractors']"
    )
    policies, tickets = built
    picky = tickets.model_copy(update={"retrieval": RetrievalSpec(min_score=0.99)})
    agents = Caller.of(["support_agents"])
    weak = retrieve(engine, [policies, picky], _request(QUERY, agents), embedders)
    assert weak.hits == [] and weak.abstention is not None
    assert weak.abstention.startswith("no passage of ['support_tickets'] qualifies")
