"""`sync_now_<product>` from the Launchpad: one run that syncs only the shards with changes, or
the shards of given document ids (found for the user); a dry run that reports and writes
nothing; and a forced re-embed of given documents that bypasses the cache."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from sqlalchemy import Engine, text

from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.embedding import Embedder
from mesh_rag_pipelines.orchestration.jobs import sync_now_job_name
from mesh_rag_pipelines.orchestration.product import product_definitions
from mesh_rag_pipelines.sources.base import SourceContext
from mesh_rag_pipelines.store.schema import SCHEMA
from mesh_rag_pipelines_tests.helpers import assert_same_index, index_rows, sync_all

PRODUCT = "hr_policies"


def _sync_now(contract: DataProductContract, **config: Any) -> dg.ExecuteInProcessResult:
    return _sync_now_logged(contract, **config)[0]


def _sync_now_logged(
    contract: DataProductContract, **config: Any
) -> tuple[dg.ExecuteInProcessResult, list[str]]:
    """The run's result and its log lines."""
    job = product_definitions(contract).resolve_job_def(sync_now_job_name(contract))
    run_config = {"ops": {f"{contract.name}_sync_now": {"config": config}}}
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(run_config=run_config, instance=instance)
        lines = [entry.user_message for entry in instance.all_logs(result.run_id)]
    assert result.success
    return result, lines


def _embedded_per_shard(result: dg.ExecuteInProcessResult) -> dict[str, int]:
    return {
        event.partition: int(event.metadata["texts_embedded"].value)  # type: ignore[arg-type, misc]
        for event in (
            e.step_materialization_data.materialization
            for e in result.get_asset_materialization_events()
        )
        if event.asset_key.path[-1] == "embeddings"
    }


def _state(engine: Engine) -> list[tuple[str, int, str]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(f"SELECT doc_id, version, checksum FROM {SCHEMA}.document_state "
                 "WHERE product = :p ORDER BY doc_id"),
            {"p": PRODUCT},
        )  # fmt: skip
        return [tuple(row) for row in rows]  # type: ignore[misc]


@pytest.fixture
def built(
    monkeypatch: pytest.MonkeyPatch,
    database_url: str,
    products_dir: Path,
    contracts: dict[str, DataProductContract],
    access: SourceContext,
    minilm: Embedder,
) -> DataProductContract:
    monkeypatch.setenv("MESH_RAG_DATABASE_URL", database_url)
    contract = contracts[PRODUCT]
    sync_all(contract, access, minilm)
    return contract


def test_sync_now_syncs_only_what_needs_it(
    built: DataProductContract, engine: Engine, products_dir: Path
) -> None:
    contract = built
    travel = contract.resolve_path(str(contract.source.path)) / "travel.md"
    doc_id = "travel.md"
    shard = f"{contract.shard_of(doc_id):02d}"
    travel.write_text(travel.read_text() + "\n\nTrains beat planes for trips under four hours.\n")

    before = _state(engine)
    planned, lines = _sync_now_logged(contract, dry_run=True)
    assert _state(engine) == before
    assert _embedded_per_shard(planned) == {}
    assert f"{PRODUCT}: shards {shard} to sync" in lines
    assert any(f"shard {shard} (dry run): 1 documents to upsert ['{doc_id}']" in m for m in lines)

    synced = _sync_now(contract)
    assert list(_embedded_per_shard(synced)) == [shard]
    assert _embedded_per_shard(synced)[shard] >= 1
    assert _embedded_per_shard(_sync_now(contract)) == {}  # nothing waits any more

    by_id = _sync_now(contract, doc_ids=["parental-leave.md", doc_id])
    shards = {f"{contract.shard_of(d):02d}" for d in ("parental-leave.md", doc_id)}
    assert _embedded_per_shard(by_id) == dict.fromkeys(shards, 0)


def test_a_forced_re_embed_sends_the_documents_texts_again(
    built: DataProductContract, engine: Engine
) -> None:
    contract = built
    before = index_rows(engine, PRODUCT)
    chunks = {text for (doc, _), (_, text, *_) in before.items() if doc == "parental-leave.md"}
    forced = _sync_now(contract, doc_ids=["parental-leave.md"], force_reembed=True)
    shard = f"{contract.shard_of('parental-leave.md'):02d}"
    assert _embedded_per_shard(forced) == {shard: len(chunks)}
    assert_same_index(index_rows(engine, PRODUCT), before)
