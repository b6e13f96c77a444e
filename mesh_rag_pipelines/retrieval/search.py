"""Search the live index versions of one or more products.

The query is embedded once per model, each product's live table is searched through its HNSW
index (iterative scans keep filtered queries from returning short lists), and the results are
merged by score. The contract's retrieval rules (allowed document types, maximum age) and the
caller's ACL groups are filters in the SQL, not a post-filter on a short list.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, select, text

from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.contracts.model import parse_duration
from mesh_rag_pipelines.embedding import Embedder, embedder_for
from mesh_rag_pipelines.store.index_versions import live_versions
from mesh_rag_pipelines.store.schema import IndexVersion, index_table


@dataclass(frozen=True)
class RetrievedChunk:
    product: str
    doc_id: str
    doc_version: int
    chunk_no: int
    score: float
    title: str | None
    section: str
    text: str
    source_updated_at: datetime | None
    index_version: str


def search(
    engine: Engine,
    contracts: list[DataProductContract],
    query: str,
    k: int = 10,
    products: list[str] | None = None,
    groups: list[str] | None = None,
    embedders: dict[str, Embedder] | None = None,
    ef_search: int = 100,
) -> list[RetrievedChunk]:
    """Top-k chunks over the chosen products; `groups=None` means no ACL filter."""
    by_name = {c.name: c for c in contracts}
    unknown = sorted(set(products or []) - set(by_name))
    if unknown:
        raise ValueError(f"unknown products {unknown}; known: {sorted(by_name)}")
    embedders = embedders if embedders is not None else {}
    query_vectors: dict[str, list[float]] = {}
    hits: list[RetrievedChunk] = []
    for version in live_versions(engine, products or sorted(by_name)):
        contract = by_name.get(version.product)
        if contract is None:
            continue
        if contract.embedding.model_id != version.model_id:
            continue  # the live version was built by another model than the contract names now
        if version.model_id not in embedders:
            embedders[version.model_id] = embedder_for(contract.embedding)
        embedder = embedders[version.model_id]
        if version.model_id not in query_vectors:
            query_vectors[version.model_id] = embedder.embed([query])[0].tolist()
        hits += _search_version(
            engine, contract, version, query_vectors[version.model_id], k, groups, ef_search
        )
    hits.sort(key=lambda hit: (-hit.score, hit.product, hit.doc_id, hit.chunk_no))
    return hits[:k]


def _search_version(
    engine: Engine,
    contract: DataProductContract,
    version: IndexVersion,
    vector: list[float],
    k: int,
    groups: list[str] | None,
    ef_search: int,
) -> list[RetrievedChunk]:
    table = index_table(version.table_name, version.dimensions, version.distance)
    column = table.c.embedding
    distance = {
        "cosine": column.cosine_distance(vector),
        "inner_product": column.max_inner_product(vector),
        "l2": column.l2_distance(vector),
    }[version.distance]
    query = select(table, distance.label("distance")).order_by(distance).limit(k)
    if groups is not None:
        query = query.where(table.c.acl_groups.overlap(groups))
    rules = contract.retrieval
    if rules.allowed_document_types:
        query = query.where(table.c.document_type.in_(rules.allowed_document_types))
    if rules.max_age:
        oldest = datetime.now(UTC) - parse_duration(rules.max_age)
        query = query.where(table.c.source_updated_at >= oldest)
    with engine.begin() as conn:
        conn.execute(
            text(
                "SELECT set_config('hnsw.ef_search', :ef, true), "
                "set_config('hnsw.iterative_scan', 'relaxed_order', true)"
            ),
            {"ef": str(ef_search)},
        )
        rows = conn.execute(query).mappings().all()
    return [
        RetrievedChunk(
            product=row["product"],
            doc_id=row["doc_id"],
            doc_version=row["doc_version"],
            chunk_no=row["chunk_no"],
            score=_score(version.distance, row["distance"]),
            title=row["title"],
            section=row["section"],
            text=row["text"],
            source_updated_at=row["source_updated_at"],
            index_version=version.id,
        )
        for row in rows
    ]


def _score(distance_kind: str, distance: float) -> float:
    """Higher is better: cosine similarity, inner product, or negative L2 distance."""
    if distance_kind == "cosine":
        return 1.0 - float(distance)
    return -float(distance)
