"""Retrieval enforces the caller's ACL groups and the contract's rules in the query itself."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine

from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.contracts.model import RetrievalSpec
from mesh_rag_pipelines.embedding import Embedder
from mesh_rag_pipelines.pipeline import SourceAccess, build_product
from mesh_rag_pipelines.retrieval import search
from mesh_rag_pipelines.samples import seed_sources

QUERY = "my tent arrived damaged and I want a refund or a replacement"


@pytest.fixture
def built(
    contracts: dict[str, DataProductContract],
    access: SourceAccess,
    engine: Engine,
    minilm: Embedder,
    s3: Any,
) -> list[DataProductContract]:
    products = [contracts["hr_policies"], contracts["support_tickets"]]
    seed_sources(products, engine, s3)
    for contract in products:
        build_product(contract, access, minilm)
    return products


def _products(
    engine: Engine, contracts: list[DataProductContract], minilm: Embedder, **kwargs: Any
) -> set[str]:
    hits = search(engine, contracts, QUERY, k=20, embedders={minilm.model_id: minilm}, **kwargs)
    return {hit.product for hit in hits}


def test_caller_sees_only_products_shared_with_one_of_its_groups(
    built: list[DataProductContract], engine: Engine, minilm: Embedder
) -> None:
    assert _products(engine, built, minilm) == {"hr_policies", "support_tickets"}
    assert _products(engine, built, minilm, groups=["support_agents"]) == {"support_tickets"}
    assert _products(engine, built, minilm, groups=["employees"]) == {"hr_policies"}
    assert _products(engine, built, minilm, groups=["contractors"]) == set()


def test_maximum_age_filters_out_older_documents(
    built: list[DataProductContract], engine: Engine, minilm: Embedder
) -> None:
    policies, tickets = built  # the sample tickets were updated in November 2026 or earlier
    recent_only = tickets.model_copy(update={"retrieval": RetrievalSpec(max_age="1d")})
    generous = tickets.model_copy(update={"retrieval": RetrievalSpec(max_age="3650d")})
    assert _products(engine, [policies, recent_only], minilm, groups=["support_agents"]) == set()
    assert _products(engine, [policies, generous], minilm, groups=["support_agents"]) == {
        "support_tickets"
    }


def test_only_allowed_document_types_are_returned(
    built: list[DataProductContract], engine: Engine, minilm: Embedder
) -> None:
    policies, tickets = built
    faq_only = tickets.model_copy(
        update={"retrieval": RetrievalSpec(allowed_document_types=["faq"])}
    )
    assert _products(engine, [policies, faq_only], minilm) == {"hr_policies"}
