"""Automation conditions of the generated assets (evaluated by each location's automation
condition sensor, see automation.py)."""

from __future__ import annotations

import dagster as dg

from mesh_rag_pipelines.contracts import DataProductContract

_SETTLED = ~dg.AutomationCondition.in_progress() & ~dg.AutomationCondition.any_deps_in_progress()
RELEASE_BACKFILL = (
    dg.AutomationCondition.code_version_changed().since_last_handled()  # type: ignore[misc]
    & _SETTLED
).with_label("new index version: backfill every shard")
SOURCE_CHANGED = dg.AutomationCondition.eager().with_label("source shard changed")

# The product-wide verdict (the release asset and its checks) follows a sync or a backfill once
# no shard is in progress, at most once per window of this schedule: a landing zone syncs every
# few seconds, and each verdict embeds the golden queries. A new index version (the asset's
# code version is the contract's version id) is judged as soon as its backfill is in.
VERDICT_WINDOW_CRON = "*/15 * * * *"
VERDICT_CONDITION = (
    dg.AutomationCondition.any_deps_match(
        dg.AutomationCondition.newly_updated()
    ).since_last_handled()
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
    & (
        ~dg.AutomationCondition.newly_requested().since(
            dg.AutomationCondition.cron_tick_passed(VERDICT_WINDOW_CRON)
        )
        | dg.AutomationCondition.code_version_changed().since_last_handled()  # type: ignore[misc]
    )
).with_label("verdict once every shard is in, at most once per window or per new version")


def index_condition(contract: DataProductContract) -> dg.AutomationCondition:
    """Chunks and embeddings: a release backfill for every source; syncs on source changes for
    polled sources (a landing zone's sensor requests its runs itself)."""
    if not contract.source.polled:
        return RELEASE_BACKFILL
    return SOURCE_CHANGED | RELEASE_BACKFILL
