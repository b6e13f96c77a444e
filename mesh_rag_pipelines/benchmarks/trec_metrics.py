"""nDCG@k and recall@k with trec_eval semantics (`ndcg_cut`, `recall`).

trec_eval ranks a run by score, breaking ties by document id in descending order, uses the
relevance level as the gain, and counts only judgments > 0 as relevant. A chunked index scores
a document by its best chunk.
"""

from __future__ import annotations

import math
from collections.abc import Iterable


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
    rankings: dict[str, list[str]], qrels: dict[str, dict[str, int]]
) -> dict[str, float]:
    """Means over the judged queries, as trec_eval averages over the queries of the run."""
    queries = [q for q in qrels if q in rankings]
    return {
        "ndcg10": sum(ndcg_at(rankings[q], qrels[q], 10) for q in queries) / len(queries),
        "recall100": sum(recall_at(rankings[q], qrels[q], 100) for q in queries) / len(queries),
        "queries": len(queries),
    }
