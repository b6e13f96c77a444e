"""Retrieval quality of an index version on relevance judgments: nDCG@10 and recall@k over
documents, with trec_eval semantics (`ndcg_cut`, `recall`).

trec_eval ranks a run by score, breaking ties by document id in descending order, uses the
relevance level as the gain, and counts only judgments > 0 as relevant. A chunked index scores
a document by its best chunk, and k counts documents: k chunks would hold fewer than k
documents and understate recall. Judgments are read in BEIR's formats.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.embedding import Embedder
from mesh_rag_pipelines.retrieval.search import Caller, search

Qrels = dict[str, dict[str, int]]


def load_qrels(path: Path) -> Qrels:
    """BEIR qrels: query-id, corpus-id, score, tab-separated; a header line is skipped."""
    qrels: Qrels = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        parts = line.split("\t")
        if not line.strip() or (number == 1 and not parts[-1].strip().lstrip("-").isdigit()):
            continue
        if len(parts) != 3:
            raise ValueError(f"{path}: line {number}: expected query-id, corpus-id, score")
        query_id, doc_id, score = parts
        qrels.setdefault(query_id, {})[doc_id] = int(score)
    return qrels


def load_queries(path: Path, judged: Iterable[str] | None = None) -> dict[str, str]:
    """BEIR queries: JSON Lines of {"_id", "text"}; only the judged ones if given."""
    wanted = set(judged) if judged is not None else None
    queries = {}
    for line in path.read_text().splitlines():
        if line.strip():
            query = json.loads(line)
            if wanted is None or query["_id"] in wanted:
                queries[query["_id"]] = query["text"]
    return queries


def rank_documents(chunk_scores: Iterable[tuple[str, float]], depth: int = 1000) -> list[str]:
    """Document ids by their best chunk's score, trec_eval order, at most `depth`."""
    best: dict[str, float] = {}
    for doc_id, score in chunk_scores:
        if score > best.get(doc_id, -math.inf):
            best[doc_id] = score
    by_id = sorted(best, reverse=True)
    return sorted(by_id, key=lambda doc_id: -best[doc_id])[:depth]


def ndcg_at(ranking: list[str], judged: dict[str, int], k: int = 10) -> float:
    gains = sorted((rel for rel in judged.values() if rel > 0), reverse=True)[:k]
    ideal = sum(gain / math.log2(rank + 2) for rank, gain in enumerate(gains))
    if ideal == 0:
        return 0.0
    actual = sum(
        max(judged.get(doc_id, 0), 0) / math.log2(rank + 2)
        for rank, doc_id in enumerate(ranking[:k])
    )
    return actual / ideal


def recall_at(ranking: list[str], judged: dict[str, int], k: int = 100) -> float:
    relevant = {doc_id for doc_id, rel in judged.items() if rel > 0}
    if not relevant:
        return 0.0
    return len(relevant & set(ranking[:k])) / len(relevant)


def mean_scores(
    rankings: dict[str, list[str]], qrels: Qrels, recall_k: int = 100
) -> dict[str, float]:
    """Means over the judged queries, as trec_eval averages over the queries of the run."""
    queries = [q for q in qrels if q in rankings]
    count = max(len(queries), 1)
    return {
        "ndcg10": sum(ndcg_at(rankings[q], qrels[q], 10) for q in queries) / count,
        f"recall{recall_k}": sum(recall_at(rankings[q], qrels[q], recall_k) for q in queries)
        / count,
        "queries": len(queries),
    }


@dataclass(frozen=True)
class Scores:
    ndcg10: float
    recall: float
    recall_k: int
    queries: int


def document_rankings(
    engine: Engine,
    contract: DataProductContract,
    queries: dict[str, str],
    depth: int,
    version: str | None = None,
    embedders: dict[str, Embedder] | None = None,
) -> dict[str, list[str]]:
    """Query id -> the top `depth` documents, of `version` (default: the live one)."""
    versions = {contract.name: version} if version else None
    embedders = embedders if embedders is not None else {}
    return {
        query_id: rank_documents(
            (hit.doc_id, hit.score)
            for hit in search(
                engine,
                [contract],
                text,
                Caller.of_product(contract),
                k=depth,
                unit="documents",
                versions=versions,
                embedders=embedders,
            )
        )
        for query_id, text in queries.items()
    }


def evaluate(
    engine: Engine,
    contract: DataProductContract,
    queries: dict[str, str],
    qrels: Qrels,
    recall_k: int = 100,
    version: str | None = None,
    embedders: dict[str, Embedder] | None = None,
) -> Scores:
    """nDCG@10 and recall@k of a version on judged queries, scoring documents."""
    rankings = document_rankings(engine, contract, queries, max(10, recall_k), version, embedders)
    means = mean_scores(rankings, qrels, recall_k)
    return Scores(means["ndcg10"], means[f"recall{recall_k}"], recall_k, int(means["queries"]))
