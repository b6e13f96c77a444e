"""Search the live index versions of one or more products.

Each product is served by its live version, with that version's own model and search breadth,
whatever its contract says now: a product never disappears from results during a release. The
query is embedded once per model, each version's table is searched through its HNSW index
(iterative scans keep filtered queries from returning short lists), and the results are merged
by score. `k` counts chunks, or documents (each represented by its best chunk).

Every query runs as the serving role under row-level security with the caller's groups: the
database returns only rows the caller may read, whatever the query. The contract's retrieval
rules (allowed document types, maximum age) are filters in the SQL, not a post-filter on a short
list; its minimum score drops weaker hits from the top k.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Literal

from sqlalchemy import Engine, Table, select

from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.contracts.model import parse_duration
from mesh_rag_pipelines.embedding import Embedder, query_embedder_for
from mesh_rag_pipelines.governance.access import act_as_caller, caller_groups
from mesh_rag_pipelines.governance.pii import query_masker
from mesh_rag_pipelines.retrieval.planning import plan_scan
from mesh_rag_pipelines.store.index_versions import get_version, live_versions
from mesh_rag_pipelines.store.schema import IndexVersion, index_table


@dataclass(frozen=True)
class Caller:
    """Who asks: the ACL groups their identity carries. An operator reads without the ACL, and
    only through a connection whose role bypasses row-level security (see governance.access)."""

    groups: tuple[str, ...] = ()
    operator: bool = False

    @classmethod
    def of(cls, groups: Iterable[str]) -> Caller:
        """Groups checked like a contract's: a separator cannot hide a second group in one."""
        return cls(tuple(caller_groups(list(groups))))

    @classmethod
    def of_product(cls, contract: DataProductContract) -> Caller:
        """A caller who may read every document of the product: how it is evaluated."""
        return cls.of(contract.acl_groups)


OPERATOR = Caller(operator=True)


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
    document_type: str = ""
    # The contract's metadata fields of the document, as indexed.
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class SearchTimings:
    """What one search spent, filled in as it runs (the service's query log records it):
    milliseconds embedding the query and searching the indexes, and the versions that served."""

    embed_ms: float = 0.0
    search_ms: float = 0.0
    index_versions: list[str] = field(default_factory=list)


Unit = Literal["chunks", "documents"]
# Chunks read per document wanted, at first, when k counts documents; doubled while short.
_CHUNKS_PER_DOCUMENT = 4
_MAX_ROUNDS = 5


def search(
    engine: Engine,
    contracts: list[DataProductContract],
    query: str,
    caller: Caller,
    k: int = 10,
    products: list[str] | None = None,
    embedders: dict[str, Embedder] | None = None,
    ef_search: int | None = None,
    unit: Unit = "chunks",
    versions: dict[str, str] | None = None,
    timings: SearchTimings | None = None,
) -> list[RetrievedChunk]:
    """Top-k chunks (or documents) over the chosen products, of the rows `caller` may read.

    `versions` maps a product to an index version to search instead of its live one (how a
    candidate is evaluated before it serves); `ef_search` overrides each version's default.
    `timings`, if given, receives where the time went.
    """
    by_name = {c.name: c for c in contracts}
    unknown = sorted(set(products or []) - set(by_name))
    if unknown:
        raise ValueError(f"unknown products {unknown}; known: {sorted(by_name)}")
    chosen = products or sorted(by_name)
    # Before the query reaches any model: the platform's default PII types, and the products'.
    query = query_masker([by_name[name] for name in chosen]).text(query)
    embedders = embedders if embedders is not None else {}
    query_vectors: dict[str, list[float]] = {}
    hits: list[RetrievedChunk] = []
    spent = timings if timings is not None else SearchTimings()
    for version in _versions_to_search(engine, chosen, versions or {}):
        contract = by_name[version.product]
        if version.model_id not in embedders:
            embedders[version.model_id] = query_embedder_for(version.embedding_spec)
        if version.model_id not in query_vectors:
            started = time.perf_counter()
            vector = embedders[version.model_id].embed([query])[0]
            query_vectors[version.model_id] = vector.tolist()
            spent.embed_ms += (time.perf_counter() - started) * 1000
        breadth = ef_search or version.index_spec.ef_search
        vector = query_vectors[version.model_id]
        started = time.perf_counter()
        hits += _search_version(engine, contract, version, vector, k, caller, breadth, unit)
        spent.search_ms += (time.perf_counter() - started) * 1000
        spent.index_versions.append(version.id)
    hits.sort(key=lambda hit: (-hit.score, hit.product, hit.doc_id, hit.chunk_no))
    return _best_per_document(hits)[:k] if unit == "documents" else hits[:k]


def _versions_to_search(
    engine: Engine, products: list[str], chosen: dict[str, str]
) -> list[IndexVersion]:
    found = [v for v in live_versions(engine, products) if v.product not in chosen]
    for product, version_id in chosen.items():
        version = get_version(engine, version_id)
        if version is None or version.product != product:
            raise ValueError(f"product {product}: no index version {version_id!r}")
        found.append(version)
    return found


def _best_per_document(hits: list[RetrievedChunk]) -> list[RetrievedChunk]:
    """The first (best) chunk of each document, in order."""
    seen: set[tuple[str, str]] = set()
    best = []
    for hit in hits:
        if (hit.product, hit.doc_id) not in seen:
            seen.add((hit.product, hit.doc_id))
            best.append(hit)
    return best


def _search_version(
    engine: Engine,
    contract: DataProductContract,
    version: IndexVersion,
    vector: list[float],
    k: int,
    caller: Caller,
    ef_search: int,
    unit: Unit,
) -> list[RetrievedChunk]:
    """The version's top k chunks, or enough chunks to hold its top k documents, at least as
    good as the contract's minimum score."""
    limit = k if unit == "chunks" else k * _CHUNKS_PER_DOCUMENT
    for _ in range(_MAX_ROUNDS):
        hits = _nearest_chunks(engine, contract, version, vector, limit, caller, ef_search)
        if unit == "chunks" or len(hits) < limit or len({h.doc_id for h in hits}) >= k:
            break
        limit *= 2
    minimum = contract.retrieval.min_score
    return hits if minimum is None else [hit for hit in hits if hit.score >= minimum]


def _nearest_chunks(
    engine: Engine,
    contract: DataProductContract,
    version: IndexVersion,
    vector: list[float],
    limit: int,
    caller: Caller,
    ef_search: int,
) -> list[RetrievedChunk]:
    table = _served_table(version.table_name, version.dimensions, version.distance)
    column = table.c.embedding
    distance = {
        "cosine": column.cosine_distance(vector),
        "inner_product": column.max_inner_product(vector),
        "l2": column.l2_distance(vector),
    }[version.distance]
    # Every column but the vector itself: a hit never needs it back (384 floats as text).
    shown = [c for c in table.c if c.name != "embedding"]
    query = select(*shown, distance.label("distance")).order_by(distance).limit(limit)
    rules = contract.retrieval
    if rules.allowed_document_types:
        query = query.where(table.c.document_type.in_(rules.allowed_document_types))
    if rules.max_age:
        oldest = datetime.now(UTC) - parse_duration(rules.max_age)
        query = query.where(table.c.source_updated_at >= oldest)
    with engine.begin() as conn:
        if not caller.operator:
            act_as_caller(conn, caller.groups)
        plan_scan(conn, version.table_name, ef_search, filtered=not caller.operator)
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
            document_type=row["document_type"],
            metadata=row["metadata"],
        )
        for row in rows
    ]


@lru_cache(maxsize=1024)
def _served_table(table_name: str, dimensions: int, distance: str) -> Table:
    """One Table per index version and process: SQLAlchemy caches a query's compiled form per
    Table object, so a new one per request compiled every search again (milliseconds)."""
    return index_table(table_name, dimensions, distance)


def _score(distance_kind: str, distance: float) -> float:
    """Higher is better: cosine similarity, inner product, or negative L2 distance."""
    if distance_kind == "cosine":
        return 1.0 - float(distance)
    return -float(distance)
