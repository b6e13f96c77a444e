"""How each product is served, watched from Dagster: `<product>/serving`, materialized every hour
by a schedule that ships RUNNING.

Each materialization records, as numbers the asset's page plots over time:
- the last hour of the retrieval service's query log and of its judgments
  (`store/serving_stats.py`): requests, errors, p50 and p99 latency, abstention, empty-result
  and negative-feedback rates;
- the contract's golden queries replayed against the live index version, scored as the release
  gate scores them (hit rate in the top 5, recall@5), under a key per index version, so that
  quality over time is a line per version;
- how many query log rows older than the retention (QUERY_LOG_RETENTION) it removed.

The hour is the one before the tick that launched the run (a rerun of an old run reports the
same hour); a run launched by hand reports the hour before it started. Two checks warn, never
block: the p99 above the contract's `retrieval.latency_objective_ms`, and the abstention rate
jumping against the latest earlier hour that had enough requests to compare with.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import dagster as dg
from sqlalchemy import Engine

from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.contracts.model import parse_duration
from mesh_rag_pipelines.orchestration.assets import common_attributes
from mesh_rag_pipelines.orchestration.releases import release_key
from mesh_rag_pipelines.orchestration.resources import EmbeddingModels, IndexStore
from mesh_rag_pipelines.releases.validation import GOLDEN_K, OVERLAP_K
from mesh_rag_pipelines.retrieval.evaluation import document_rankings, mean_scores
from mesh_rag_pipelines.settings import (
    DEFAULT_QUERY_LOG_RETENTION,
    QUERY_LOG_RETENTION,
    Settings,
)
from mesh_rag_pipelines.store.index_versions import live_versions
from mesh_rag_pipelines.store.query_log import purge_before
from mesh_rag_pipelines.store.serving_stats import ServingStats, serving_stats

SERVING_CRON = "0 * * * *"
WINDOW = timedelta(hours=1)
# The end of the hour a run reports (ISO 8601), set by the schedule from its tick.
WINDOW_END_TAG = "mesh_rag/serving_window_end"
P99_CHECK = "p99_within_objective"
ABSTENTION_CHECK = "abstention_rate_steady"
# The abstention check compares only hours of at least this many requests: below it, one
# abstention more or less moves the rate by several points.
MIN_QUERIES = 20
# A rise of the abstention rate (a share of requests, 0-1) by more than this over the baseline
# hour warns: 0.10 is ten more requests abstaining out of every hundred.
ABSTENTION_JUMP = 0.10
# How many earlier materializations the abstention check searches for its baseline hour.
BASELINE_LOOKBACK = 24


def serving_key(contract: DataProductContract) -> dg.AssetKey:
    return dg.AssetKey([contract.name, "serving"])


def serving_schedule_name(contract: DataProductContract) -> str:
    return f"monitor_{contract.name}"


def serving_schedule(contract: DataProductContract) -> dg.ScheduleDefinition:
    """Every hour, the `serving` asset for the hour before the tick."""

    @dg.schedule(
        name=serving_schedule_name(contract),
        cron_schedule=SERVING_CRON,
        target=dg.AssetSelection.assets(serving_key(contract)),
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"How {contract.name} was served in the past hour, every hour.",
        tags={"domain": contract.domain},
    )
    def _hourly(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        end = context.scheduled_execution_time.astimezone(UTC)
        return dg.RunRequest(tags={WINDOW_END_TAG: end.isoformat()})

    return _hourly


def serving_asset(contract: DataProductContract) -> dg.AssetsDefinition:
    key = serving_key(contract)
    objective = contract.retrieval.latency_objective_ms

    @dg.asset(
        key=key,
        deps=[release_key(contract)],
        kinds={"postgres"},
        description=(
            f"How {contract.name} was served through the retrieval service in the past hour "
            "(requests, latency, abstentions, empty results, negative judgments) and how its "
            "live index version answers the contract's golden queries; purges the query log "
            "beyond its retention."
        ),
        check_specs=[
            dg.AssetCheckSpec(
                P99_CHECK,
                asset=key,
                description=(
                    f"The hour's p99 latency is within the contract's objective ({objective} ms)."
                    if objective
                    else "The contract sets no latency objective (retrieval.latency_objective_ms)."
                ),
            ),
            dg.AssetCheckSpec(
                ABSTENTION_CHECK,
                asset=key,
                description=(
                    f"The hour's abstention rate rose by at most {ABSTENTION_JUMP} over the latest "
                    f"earlier hour, comparing hours of at least {MIN_QUERIES} requests."
                ),
            ),
        ],
        **common_attributes(contract),
    )
    def _serving(
        context: dg.AssetExecutionContext,
        index_store: IndexStore,
        embedding_models: EmbeddingModels,
    ) -> dg.MaterializeResult:
        engine = index_store.engine
        end = window_end(context.run.tags)
        retention = query_log_retention(index_store.settings)
        stats = serving_stats(engine, contract.name, end - WINDOW, end)
        replay = replay_golden_queries(engine, contract, embedding_models)
        # The log is shared: whichever product's asset runs first in an hour purges for all.
        purged = purge_before(engine, datetime.now(UTC) - retention.period)
        context.log.info(
            f"{contract.name}: {stats.queries} requests in [{stats.start}, {stats.end}); "
            f"{purged} query log rows older than {retention.setting} purged"
        )
        baseline = abstention_baseline(context.instance, key)
        return dg.MaterializeResult(
            metadata={
                **stats_metadata(stats),
                **replay.metadata(),
                "query_log_retention": retention.setting,
                "query_log_purged": dg.MetadataValue.int(purged),
            },
            check_results=[latency_check(contract, stats), abstention_check(stats, baseline)],
        )

    return _serving


def window_end(tags: Mapping[str, str]) -> datetime:
    """The end of the hour a run reports: its tick's time, else now."""
    tagged = tags.get(WINDOW_END_TAG)
    if tagged is None:
        return datetime.now(UTC)
    try:
        end = datetime.fromisoformat(tagged)
    except ValueError:
        raise ValueError(f"run tag {WINDOW_END_TAG}: {tagged!r} is not an ISO 8601 time") from None
    if end.tzinfo is None:
        raise ValueError(f"run tag {WINDOW_END_TAG}: {tagged!r} has no time zone")
    return end


class Retention(NamedTuple):
    setting: str  # as written, "30d"
    period: timedelta


def query_log_retention(settings: Settings) -> Retention:
    """How long the query log keeps a request: QUERY_LOG_RETENTION, a duration like "30d"."""
    setting = settings.get(QUERY_LOG_RETENTION) or DEFAULT_QUERY_LOG_RETENTION
    try:
        return Retention(setting, parse_duration(setting))
    except ValueError as exc:
        raise ValueError(f"{QUERY_LOG_RETENTION}: {exc}") from None


def stats_metadata(stats: ServingStats) -> dict[str, Any]:
    return {
        "window_start": stats.start.isoformat(timespec="seconds"),
        "window_end": stats.end.isoformat(timespec="seconds"),
        "queries": dg.MetadataValue.int(stats.queries),
        "errors": dg.MetadataValue.int(stats.errors),
        "p50_ms": dg.MetadataValue.float(round(stats.p50_ms, 3)),
        "p99_ms": dg.MetadataValue.float(round(stats.p99_ms, 3)),
        "abstention_rate": dg.MetadataValue.float(round(stats.abstention_rate, 4)),
        "empty_result_rate": dg.MetadataValue.float(round(stats.empty_result_rate, 4)),
        "judgments": dg.MetadataValue.int(stats.judgments),
        "negative_feedback_rate": dg.MetadataValue.float(round(stats.negative_feedback_rate, 4)),
    }


@dataclass(frozen=True)
class GoldenReplay:
    """The contract's golden queries against the live version (None: nothing live). Positions
    in `missed` count from 0 in the contract's list, as the release asset's check names them."""

    version: str | None
    queries: int
    hit_rate: float | None = None
    recall: float | None = None
    missed: tuple[int, ...] = ()

    def metadata(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "index_version": self.version or "none",
            "golden_queries": dg.MetadataValue.int(self.queries),
        }
        if self.version is None or self.hit_rate is None or self.recall is None:
            return found
        hit_rate = dg.MetadataValue.float(round(self.hit_rate, 4))
        return {
            **found,
            "golden_hit_rate": hit_rate,
            f"golden_hit_rate[{self.version}]": hit_rate,
            f"golden_recall_at_{GOLDEN_K}": dg.MetadataValue.float(round(self.recall, 4)),
            "golden_missed": ", ".join(f"#{n}" for n in self.missed) or "none",
        }


def replay_golden_queries(
    engine: Engine, contract: DataProductContract, embedding_models: EmbeddingModels
) -> GoldenReplay:
    """The golden queries ranked by the live version as the release gate ranks them (documents,
    top 10, the product's own caller), scored in its top 5."""
    live = next(iter(live_versions(engine, [contract.name])), None)
    if live is None or not contract.golden_queries:
        return GoldenReplay(live.id if live else None, len(contract.golden_queries))
    golden = {f"golden-{n}": g.query for n, g in enumerate(contract.golden_queries)}
    relevant = {
        f"golden-{n}": dict.fromkeys(g.expected_document_ids, 1)
        for n, g in enumerate(contract.golden_queries)
    }
    embedders = {live.model_id: embedding_models.for_spec(live.embedding_spec)}
    rankings = document_rankings(engine, contract, golden, OVERLAP_K, live.id, embedders)
    missed = tuple(
        n
        for n, query in enumerate(golden)
        if not set(rankings[query][:GOLDEN_K]) & relevant[query].keys()
    )
    return GoldenReplay(
        version=live.id,
        queries=len(golden),
        hit_rate=(len(golden) - len(missed)) / len(golden),
        recall=mean_scores(rankings, relevant, GOLDEN_K)[f"recall{GOLDEN_K}"],
        missed=missed,
    )


def latency_check(contract: DataProductContract, stats: ServingStats) -> dg.AssetCheckResult:
    objective = contract.retrieval.latency_objective_ms
    within = objective is None or stats.queries == 0 or stats.p99_ms <= objective
    return dg.AssetCheckResult(
        check_name=P99_CHECK,
        passed=within,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "p99_ms": dg.MetadataValue.float(round(stats.p99_ms, 3)),
            "objective_ms": dg.MetadataValue.int(objective) if objective else "none",
            "queries": dg.MetadataValue.int(stats.queries),
        },
    )


@dataclass(frozen=True)
class Baseline:
    """An earlier hour the abstention rate is compared with."""

    window_end: str
    queries: int
    abstention_rate: float


def abstention_baseline(instance: dg.DagsterInstance, key: dg.AssetKey) -> Baseline | None:
    """The latest earlier materialization of at least MIN_QUERIES requests, if any of the last
    BASELINE_LOOKBACK has that many."""
    records = instance.fetch_materializations(key, limit=BASELINE_LOOKBACK).records
    for record in records:
        materialization = record.asset_materialization
        if materialization is None:
            continue
        metadata = {name: value.value for name, value in materialization.metadata.items()}
        queries, rate = metadata.get("queries"), metadata.get("abstention_rate")
        if isinstance(queries, int) and isinstance(rate, float) and queries >= MIN_QUERIES:
            return Baseline(str(metadata.get("window_end", "")), queries, rate)
    return None


def abstention_check(stats: ServingStats, baseline: Baseline | None) -> dg.AssetCheckResult:
    rate = round(stats.abstention_rate, 4)
    metadata: dict[str, Any] = {
        "abstention_rate": dg.MetadataValue.float(rate),
        "queries": dg.MetadataValue.int(stats.queries),
        "threshold": dg.MetadataValue.float(ABSTENTION_JUMP),
        "min_queries": dg.MetadataValue.int(MIN_QUERIES),
    }
    if stats.queries < MIN_QUERIES:
        metadata["compared"] = f"no: fewer than {MIN_QUERIES} requests this hour"
        return _abstention_result(True, metadata)
    if baseline is None:
        metadata["compared"] = f"no: no earlier hour of at least {MIN_QUERIES} requests"
        return _abstention_result(True, metadata)
    rise = round(rate - baseline.abstention_rate, 4)
    metadata.update(
        compared=f"with the hour ending {baseline.window_end}",
        baseline_abstention_rate=dg.MetadataValue.float(baseline.abstention_rate),
        rise=dg.MetadataValue.float(rise),
    )
    return _abstention_result(rise <= ABSTENTION_JUMP, metadata)


def _abstention_result(passed: bool, metadata: dict[str, Any]) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=ABSTENTION_CHECK,
        passed=passed,
        severity=dg.AssetCheckSeverity.WARN,
        metadata=metadata,
    )
