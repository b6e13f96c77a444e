"""Each product's `serving` asset: the past hour of the query log and of the judgments as the
service wrote them (as the serving role), the golden queries replayed against the live version,
the query log's retention, and two checks that warn; its hourly schedule ships RUNNING."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from sqlalchemy import Engine, func, select, update

from mesh_rag_pipelines import connections, settings
from mesh_rag_pipelines.contracts import ContractError, DataProductContract, GoldenQuery
from mesh_rag_pipelines.contracts.loader import load_contract
from mesh_rag_pipelines.definitions import defs
from mesh_rag_pipelines.embedding import Embedder
from mesh_rag_pipelines.locations import domain_definitions
from mesh_rag_pipelines.orchestration.monitoring import (
    ABSTENTION_CHECK,
    P99_CHECK,
    WINDOW_END_TAG,
    query_log_retention,
    serving_asset,
    serving_key,
    serving_schedule,
    serving_schedule_name,
)
from mesh_rag_pipelines.orchestration.resources import EmbeddingModels, IndexStore
from mesh_rag_pipelines.sources.base import SourceContext
from mesh_rag_pipelines.store.feedback import record_feedback
from mesh_rag_pipelines.store.index_versions import index_version_id
from mesh_rag_pipelines.store.query_log import LoggedRequest, record_request
from mesh_rag_pipelines.store.schema import QueryLog
from mesh_rag_pipelines_tests.helpers import edited, sync_all

HR = "hr_policies"


@pytest.fixture
def serving(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Engine:
    """The store as the service reaches it: the serving role, with its own password."""
    monkeypatch.setenv(settings.PROFILE, "local")
    monkeypatch.setenv(settings.DATABASE_URL, database_url)
    monkeypatch.delenv(settings.SERVING_DATABASE_URL, raising=False)
    monkeypatch.delenv(settings.QUERY_LOG_RETENTION, raising=False)
    return connections.serving_engine()


def _request(
    serving: Engine,
    total_ms: float,
    *,
    products: tuple[str, ...] = (HR,),
    results: tuple[str, ...] = (f"{HR}/travel.md#0",),
    abstention: str | None = None,
    status: int = 200,
) -> uuid.UUID:
    response_id = uuid.uuid4()
    record_request(
        serving,
        LoggedRequest(
            response_id=response_id,
            subject="app:intranet",
            identity_kind="api_key",
            route="search",
            query_masked="hotel limit in New York",
            products=list(products),
            index_versions=["v"] * len(products),
            k=5,
            unit="documents",
            embed_ms=total_ms / 2,
            search_ms=total_ms / 4,
            total_ms=total_ms,
            result_ids=list(results),
            abstention=abstention,
            status=status,
        ),
    )
    return response_id


def _backdate(engine: Engine, response_ids: list[uuid.UUID], by: timedelta) -> None:
    """Move logged requests into the past (as the owner: the serving role never updates)."""
    with engine.begin() as conn:
        conn.execute(
            update(QueryLog)
            .where(QueryLog.response_id.in_(response_ids))
            .values(at=QueryLog.at - by)
        )


def _materialize(
    contract: DataProductContract,
    database_url: str,
    instance: dg.DagsterInstance,
    tags: dict[str, str] | None = None,
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [serving_asset(contract)],
        instance=instance,
        resources={
            "index_store": IndexStore(database_url=database_url),
            "embedding_models": EmbeddingModels(),
        },
        tags=tags,
    )


def _metadata(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    [event] = result.get_asset_materialization_events()
    metadata = event.step_materialization_data.materialization.metadata
    return {name: value.value for name, value in metadata.items()}


def _check(result: dg.ExecuteInProcessResult, name: str) -> dg.AssetCheckEvaluation:
    [evaluation] = [e for e in result.get_asset_check_evaluations() if e.check_name == name]
    return evaluation


def test_the_serving_asset_records_the_past_hour_golden_quality_and_the_retention_purge(
    contracts: dict[str, DataProductContract],
    access: SourceContext,
    engine: Engine,
    database_url: str,
    serving: Engine,
    minilm: Embedder,
) -> None:
    shipped = contracts[HR]
    sync_all(shipped, access, minilm)
    unanswerable = GoldenQuery(
        query="Which colour is the cafeteria's carpet?", expected_document_ids=["no-such.md"]
    )
    contract = shipped.model_copy(
        update={"golden_queries": [*shipped.golden_queries, unanswerable]}
    )
    answered = _request(serving, 10)
    abstained = _request(serving, 20, results=(), abstention="no result above min_score")
    empty = _request(serving, 30, results=())
    _request(serving, 40, products=(HR, "catalog_products"), results=(), status=500)
    other_product = _request(serving, 1000, products=("catalog_products",))
    two_hours_ago = _request(serving, 5000)
    past_retention = _request(serving, 5000)
    _backdate(engine, [two_hours_ago], timedelta(hours=2))
    _backdate(engine, [past_retention], timedelta(days=30, minutes=1))
    record_feedback(serving, answered, "app:intranet", False, [f"{HR}/travel.md"], None)
    record_feedback(serving, abstained, "app:intranet", True, [], None)
    record_feedback(serving, empty, "app:intranet", True, [], None)
    record_feedback(serving, empty, "app:intranet", False, [], "changed my mind")
    record_feedback(serving, other_product, "app:intranet", False, [], None)

    result = _materialize(contract, database_url, dg.DagsterInstance.ephemeral())

    version = index_version_id(contract)
    metadata = _metadata(result)
    start, end = (datetime.fromisoformat(metadata.pop(k)) for k in ("window_start", "window_end"))
    assert end - start == timedelta(hours=1)
    assert metadata == {
        "queries": 4,
        "errors": 1,
        "p50_ms": 25.0,  # interpolated between 20 and 30
        "p99_ms": 39.7,  # 30 + 0.97 * (40 - 30)
        "abstention_rate": 0.25,
        "empty_result_rate": 0.25,  # the error had no result either, but it was an error
        "judgments": 3,
        "negative_feedback_rate": 0.6667,  # the empty one's latest judgment is negative
        "index_version": version,
        "golden_queries": 6,
        "golden_hit_rate": 0.8333,
        f"golden_hit_rate[{version}]": 0.8333,
        "golden_recall_at_5": 0.8333,
        "golden_missed": "#5",
        "query_log_retention": "30d",
        "query_log_purged": 1,
    }
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(QueryLog)).scalar() == 6
    no_objective = _check(result, P99_CHECK)
    assert no_objective.passed and no_objective.severity == dg.AssetCheckSeverity.WARN
    assert no_objective.metadata["objective_ms"].value == "none"
    too_few = _check(result, ABSTENTION_CHECK)
    assert too_few.passed
    assert too_few.metadata["compared"].value == "no: fewer than 20 requests this hour"


def test_a_p99_over_the_contracts_objective_warns_and_one_within_it_passes(
    products_dir: Path,
    engine: Engine,
    database_url: str,
    serving: Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(settings.QUERY_LOG_RETENTION, "2h")
    for total_ms in (10, 20, 30, 40):
        _request(serving, total_ms)
    old = [_request(serving, 5) for _ in range(3)]
    _backdate(engine, old, timedelta(hours=3))
    instance = dg.DagsterInstance.ephemeral()
    objective = "retrieval:\n  latency_objective_ms: 39\n"

    slow = _materialize(edited(products_dir, HR, "retrieval:\n", objective), database_url, instance)
    fast = edited(products_dir, HR, "latency_objective_ms: 39", "latency_objective_ms: 40")
    within = _materialize(fast, database_url, instance)

    warned = _check(slow, P99_CHECK)
    assert not warned.passed and warned.severity == dg.AssetCheckSeverity.WARN
    assert {k: v.value for k, v in warned.metadata.items()} == {
        "p99_ms": 39.7,
        "objective_ms": 39,
        "queries": 4,
    }
    assert slow.success  # a warning never fails the run
    assert _check(within, P99_CHECK).passed
    # Nothing live: no golden numbers, and the version says so.
    assert _metadata(slow)["index_version"] == "none"
    assert "golden_hit_rate" not in _metadata(slow)
    assert (_metadata(slow)["query_log_purged"], _metadata(within)["query_log_purged"]) == (3, 0)


def test_a_latency_objective_must_be_a_positive_number_of_milliseconds(
    products_dir: Path,
) -> None:
    with pytest.raises(ContractError, match="latency_objective_ms"):
        edited(products_dir, HR, "retrieval:\n", "retrieval:\n  latency_objective_ms: 0\n")


def _hour(serving: Engine, engine: Engine, requests: int, abstaining: int, hours_ago: int) -> None:
    """`requests` requests, the first `abstaining` abstaining, logged `hours_ago` hours back."""
    logged = [
        _request(serving, 10, results=(), abstention="no result above min_score")
        for _ in range(abstaining)
    ]
    logged += [_request(serving, 10) for _ in range(requests - abstaining)]
    _backdate(engine, logged, timedelta(hours=hours_ago))


def test_an_abstention_rate_jumping_over_the_last_busy_hour_warns(
    contracts: dict[str, DataProductContract],
    engine: Engine,
    database_url: str,
    serving: Engine,
) -> None:
    _hour(serving, engine, requests=20, abstaining=2, hours_ago=3)
    _hour(serving, engine, requests=5, abstaining=5, hours_ago=2)  # too quiet to compare with
    _hour(serving, engine, requests=20, abstaining=4, hours_ago=1)
    _hour(serving, engine, requests=20, abstaining=7, hours_ago=0)
    now = datetime.now(UTC)
    instance = dg.DagsterInstance.ephemeral()

    def hour_ending(hours_ago: int) -> dict[str, Any]:
        end = now + timedelta(minutes=1) - timedelta(hours=hours_ago)
        tags = {WINDOW_END_TAG: end.isoformat()}
        evaluation = _check(
            _materialize(contracts[HR], database_url, instance, tags), ABSTENTION_CHECK
        )
        return {
            "passed": evaluation.passed,
            "severity": evaluation.severity,
            **{k: v.value for k, v in evaluation.metadata.items()},
        }

    first, quiet, steady, jump = (hour_ending(h) for h in (3, 2, 1, 0))

    assert first["passed"] and first["abstention_rate"] == 0.1
    assert first["compared"] == "no: no earlier hour of at least 20 requests"
    assert quiet["passed"] and (quiet["queries"], quiet["abstention_rate"]) == (5, 1.0)
    assert quiet["compared"] == "no: fewer than 20 requests this hour"
    # Compared with the last hour of 20 requests or more: the quiet one is passed over.
    assert steady["passed"] and (steady["baseline_abstention_rate"], steady["rise"]) == (0.1, 0.1)
    assert not jump["passed"] and jump["severity"] == dg.AssetCheckSeverity.WARN
    assert (jump["abstention_rate"], jump["baseline_abstention_rate"], jump["rise"]) == (
        0.35,
        0.2,
        0.15,
    )


def test_the_hourly_schedule_ships_running_in_every_code_location_and_names_its_hour(
    products_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(settings.CONTRACTS_DIR, str(products_dir))
    for definitions, products in (
        (defs(), ["catalog_products", "hr_policies", "support_tickets"]),
        (domain_definitions("people"), ["hr_policies"]),
    ):
        repository = definitions.get_repository_def()
        names = {s.name for s in repository.schedule_defs if s.name.startswith("monitor_")}
        assert names == {f"monitor_{product}" for product in products}
        for product in products:
            schedule = repository.get_schedule_def(f"monitor_{product}")
            assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
            assert schedule.cron_schedule == "0 * * * *"
            key = dg.AssetKey([product, "serving"])
            assert (
                repository.asset_graph.get(key).group_name
                == repository.asset_graph.get(dg.AssetKey([product, "release"])).group_name
            )

    contract = load_contract(products_dir / f"{HR}.yaml")
    tick = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
    with dg.build_schedule_context(scheduled_execution_time=tick) as context:
        [run] = serving_schedule(contract).evaluate_tick(context).run_requests or []
    assert run.tags[WINDOW_END_TAG] == "2026-12-03T10:00:00+00:00"
    assert serving_schedule_name(contract) == "monitor_hr_policies"
    assert serving_key(contract) == dg.AssetKey(["hr_policies", "serving"])


def test_a_retention_that_is_not_a_duration_is_refused_naming_the_setting() -> None:
    assert query_log_retention(settings.Settings({})) == ("30d", timedelta(days=30))
    assert query_log_retention(settings.Settings({settings.QUERY_LOG_RETENTION: "12h"})) == (
        "12h",
        timedelta(hours=12),
    )
    with pytest.raises(ValueError, match=f"^{settings.QUERY_LOG_RETENTION}: '30 days' is not"):
        query_log_retention(settings.Settings({settings.QUERY_LOG_RETENTION: "30 days"}))
