"""The release gate: a candidate index version is measured against the live one before it may
serve.

Measured: coverage (every live document with its chunks at its current version), ghost rows,
vector dimensions and norms, the golden queries' hit rate, the hit rate of the product's
evaluation set (queries from callers' negative feedback, each accepted by a reviewer: nothing
unreviewed is scored) with its size, and, where the contract names relevance judgments,
nDCG@10 and recall@k over documents; overlap@10 with the live version's results over all these
queries is reported alongside. The contract's `release` settings give the thresholds (minimum
coverage, largest quality drop). The verdict and every measure are recorded on the version and
in the release history, and rendered as a blue-vs-green report.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, text, update

from mesh_rag_pipelines.contracts import DataProductContract, EmbeddingSpec
from mesh_rag_pipelines.embedding import Embedder
from mesh_rag_pipelines.retrieval.evaluation import (
    document_rankings,
    load_qrels,
    load_queries,
    mean_scores,
)
from mesh_rag_pipelines.store.feedback import evaluation_set
from mesh_rag_pipelines.store.health import index_health
from mesh_rag_pipelines.store.index_versions import (
    build_index,
    get_version,
    live_versions,
    lock_product_releases,
    record_event,
)
from mesh_rag_pipelines.store.schema import SCHEMA, IndexVersion, qualified

GOLDEN_K = 5
OVERLAP_K = 10
# Unit vectors: every norm of a cosine or inner-product index must be 1 within this.
NORM_TOLERANCE = 0.01


@dataclass(frozen=True)
class Measure:
    name: str
    live: float | None
    candidate: float | None
    rule: str
    passed: bool | None  # None: reported, not gated


@dataclass
class ValidationReport:
    product: str
    candidate: str
    live: str | None
    measures: list[Measure] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return all(m.passed is not False for m in self.measures)

    @property
    def failures(self) -> list[str]:
        return [f"{m.name}: {m.candidate} ({m.rule})" for m in self.measures if m.passed is False]

    def metrics(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "live_version": self.live,
            "seconds": round(self.seconds, 3),
            **{
                m.name: {"live": m.live, "candidate": m.candidate, "passed": m.passed}
                for m in self.measures
            },
        }

    def markdown(self) -> str:
        verdict = "PASSED" if self.passed else "FAILED"
        lines = [
            f"**{self.product}: candidate `{self.candidate}` {verdict}** "
            f"against live `{self.live or 'none'}`",
            "",
            "| measure | live (blue) | candidate (green) | rule | verdict |",
            "|---|---|---|---|---|",
        ]
        for m in self.measures:
            verdict_cell = {True: "pass", False: "**FAIL**", None: "reported"}[m.passed]
            lines.append(
                f"| {m.name} | {_shown(m.live)} | {_shown(m.candidate)} | {m.rule} | "
                f"{verdict_cell} |"
            )
        return "\n".join(lines)


def _shown(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


def validate_version(
    engine: Engine,
    contract: DataProductContract,
    version_id: str,
    embedder_for: Callable[[EmbeddingSpec], Embedder],
    *,
    actor: str = "validation",
) -> ValidationReport:
    """Measure a candidate against the live version, record the verdict and return the report.

    The candidate's HNSW index is built first if it has none: queries measure what would serve.
    """
    started = time.perf_counter()
    candidate = get_version(engine, version_id)
    if candidate is None or candidate.product != contract.name:
        raise ValueError(f"product {contract.name}: no index version {version_id!r}")
    if candidate.status == "live":
        raise ValueError(f"product {contract.name}: {version_id} is already live")
    build_index(engine, candidate)
    live = next(iter(live_versions(engine, [contract.name])), None)
    report = ValidationReport(contract.name, candidate.id, live.id if live else None)
    report.measures += _structure(engine, contract, candidate, live)
    report.measures += _quality(engine, contract, candidate, live, embedder_for)
    report.seconds = time.perf_counter() - started
    _record(engine, contract.name, candidate, report, actor)
    return report


def _structure(
    engine: Engine,
    contract: DataProductContract,
    candidate: IndexVersion,
    live: IndexVersion | None,
) -> list[Measure]:
    rules = contract.release
    health = index_health(engine, contract.name, version=candidate)
    assert health is not None
    coverage = health.indexed_current / health.live_documents if health.live_documents else 1.0
    stats = _vector_stats(engine, candidate)
    live_stats = _vector_stats(engine, live) if live else {}
    unit = candidate.distance in ("cosine", "inner_product")
    norms_ok = stats["rows"] == 0 or (
        (
            abs(stats["min_norm"] - 1) <= NORM_TOLERANCE
            and abs(stats["max_norm"] - 1) <= NORM_TOLERANCE
        )
        if unit
        else stats["min_norm"] > 0
    )
    dims_ok = stats["rows"] == 0 or stats["min_dims"] == stats["max_dims"] == candidate.dimensions
    return [
        Measure(
            "coverage",
            None,
            round(coverage, 6),
            f">= {rules.min_coverage}",
            coverage >= rules.min_coverage,
        ),
        Measure("ghost_rows", None, health.ghost_rows, "= 0", health.ghost_rows == 0),
        Measure("rows", live_stats.get("rows"), stats["rows"], "reported", None),
        Measure(
            "dimensions",
            live.dimensions if live else None,
            candidate.dimensions,
            f"every vector {candidate.dimensions}",
            dims_ok,
        ),
        Measure(
            "min_norm",
            live_stats.get("min_norm"),
            stats["min_norm"],
            "1 +/- 0.01" if unit else "> 0",
            norms_ok,
        ),
        Measure(
            "max_norm",
            live_stats.get("max_norm"),
            stats["max_norm"],
            "1 +/- 0.01" if unit else "> 0",
            norms_ok,
        ),
    ]


def _vector_stats(engine: Engine, version: IndexVersion) -> dict[str, Any]:
    table = qualified(version.table_name)
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT count(*) AS rows, min(vector_norm(embedding)) AS min_norm, "
                "max(vector_norm(embedding)) AS max_norm, min(vector_dims(embedding)) AS min_dims, "
                f"max(vector_dims(embedding)) AS max_dims FROM {table}"
            )
        ).one()
    return {
        "rows": row.rows,
        "min_norm": round(row.min_norm, 6) if row.min_norm is not None else None,
        "max_norm": round(row.max_norm, 6) if row.max_norm is not None else None,
        "min_dims": row.min_dims,
        "max_dims": row.max_dims,
    }


def _quality(
    engine: Engine,
    contract: DataProductContract,
    candidate: IndexVersion,
    live: IndexVersion | None,
    embedder_for: Callable[[EmbeddingSpec], Embedder],
) -> list[Measure]:
    """Golden queries and judgments against both versions, scoring documents."""
    rules = contract.release
    drop = rules.max_quality_drop
    embedders = {v.model_id: embedder_for(v.embedding_spec) for v in (candidate, live) if v}
    compared = [v for v in (live, candidate) if v]
    golden = {f"golden-{i}": g.query for i, g in enumerate(contract.golden_queries)}
    rankings = {
        v.id: document_rankings(engine, contract, golden, OVERLAP_K, v.id, embedders)
        for v in compared
    }
    measures = []
    if golden:
        expected = {
            f"golden-{i}": set(g.expected_document_ids)
            for i, g in enumerate(contract.golden_queries)
        }
        hit_rates = {vid: _hit_rate(ranked, expected) for vid, ranked in rankings.items()}
        measures.append(_not_worse("golden_hit_rate", hit_rates, live, candidate, drop))
    accepted = evaluation_set(engine, contract.name)
    if accepted:
        asked = {f"feedback-{q.candidate_id}": q.query for q in accepted}
        marked = {f"feedback-{q.candidate_id}": set(q.expected_doc_ids) for q in accepted}
        feedback_rates = {}
        for v in compared:
            ranked = document_rankings(engine, contract, asked, OVERLAP_K, v.id, embedders)
            feedback_rates[v.id] = _hit_rate(ranked, marked)
            rankings[v.id].update(ranked)
        measures.append(_not_worse("feedback_hit_rate", feedback_rates, live, candidate, drop))
    measures.append(
        Measure("feedback_queries", None, len(accepted), "reported (accepted only)", None)
    )
    if rules.judgments:
        qrels = load_qrels(contract.resolve_path(rules.judgments.qrels))
        judged = load_queries(contract.resolve_path(rules.judgments.queries), judged=qrels)
        depth = max(OVERLAP_K, rules.recall_k)
        scores = {}
        for v in compared:
            ranked = document_rankings(engine, contract, judged, depth, v.id, embedders)
            scores[v.id] = mean_scores(ranked, qrels, rules.recall_k)
            rankings[v.id].update(ranked)
        ndcg = {vid: score["ndcg10"] for vid, score in scores.items()}
        recall = {vid: score[f"recall{rules.recall_k}"] for vid, score in scores.items()}
        measures.append(_not_worse("ndcg@10", ndcg, live, candidate, drop))
        measures.append(_not_worse(f"recall@{rules.recall_k}", recall, live, candidate, drop))
    if live and rankings[live.id]:
        overlaps = [
            len(set(ranked[:OVERLAP_K]) & set(rankings[candidate.id][q][:OVERLAP_K])) / OVERLAP_K
            for q, ranked in rankings[live.id].items()
        ]
        overlap = round(sum(overlaps) / len(overlaps), 4)
        measures.append(Measure(f"overlap@{OVERLAP_K}_with_live", None, overlap, "reported", None))
    return measures


def _hit_rate(rankings: dict[str, list[str]], expected: dict[str, set[str]]) -> float:
    """The share of queries with an expected document in their top GOLDEN_K documents."""
    hits = sum(bool(set(rankings[q][:GOLDEN_K]) & expected[q]) for q in expected)
    return hits / len(expected)


def _not_worse(
    name: str,
    values: dict[str, float],
    live: IndexVersion | None,
    candidate: IndexVersion,
    drop: float,
) -> Measure:
    new = round(values[candidate.id], 6)
    if live is None:
        return Measure(name, None, new, "reported (nothing live)", None)
    old = round(values[live.id], 6)
    return Measure(name, old, new, f">= live - {drop}", new >= old - drop)


def _record(
    engine: Engine, product: str, candidate: IndexVersion, report: ValidationReport, actor: str
) -> None:
    with engine.begin() as conn:
        lock_product_releases(conn, product)
        status = conn.execute(
            text(f"SELECT status FROM {SCHEMA}.index_version WHERE id = :v"), {"v": candidate.id}
        ).scalar_one()
        values: dict[str, Any] = {"metrics": report.metrics(), "validated_at": datetime.now(UTC)}
        if status != "live":  # a swap may have happened meanwhile; never demote the live one
            values["status"] = "validated" if report.passed else "failed"
        conn.execute(update(IndexVersion).where(IndexVersion.id == candidate.id).values(values))
        record_event(
            conn,
            product,
            "validated" if report.passed else "failed",
            candidate.id,
            previous=report.live,
            actor=actor,
            reason="; ".join(report.failures) or None,
            metrics=report.metrics(),
        )
