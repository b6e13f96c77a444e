"""Callers' feedback in Dagster: a job per product that collects candidate evaluation queries
from negative judgments into the review queue, and accepts or rejects candidates from the
Launchpad; a schedule, shipped running, launches a collection whenever a judgment naming the
product waits (a tick that finds none is skipped, launching nothing)."""

from typing import Literal

import dagster as dg

from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.orchestration.erasure import run_launcher
from mesh_rag_pipelines.orchestration.resources import IndexStore
from mesh_rag_pipelines.store.feedback import (
    collect_candidates,
    list_candidates,
    newest_uncollected,
    review,
)

COLLECT_CRON = "*/15 * * * *"


class FeedbackReview(dg.Config):
    """`collect` (the default) only collects; `accept` or `reject` also decide on the
    candidates `ids` of this product, all or none (a rejection needs a reason)."""

    action: Literal["collect", "accept", "reject"] = "collect"
    ids: list[int] = []
    reason: str = ""


def feedback_job_name(contract: DataProductContract) -> str:
    return f"feedback_{contract.name}"


def feedback_job(contract: DataProductContract) -> dg.JobDefinition:
    @dg.op(name=f"{contract.name}_feedback")
    def _curate(
        context: dg.OpExecutionContext, config: FeedbackReview, index_store: IndexStore
    ) -> None:
        if config.action == "reject" and not config.reason.strip():
            raise dg.Failure("a rejection needs a reason")
        engine = index_store.engine
        collected = collect_candidates(engine, [contract.name])
        context.log.info(f"{contract.name}: {collected.created} new candidates collected")
        if collected.ignored:
            context.log.warning(f"{contract.name}: {collected.ignored}")
        if config.action != "collect":
            reviewed = review(
                engine,
                config.ids,
                "accepted" if config.action == "accept" else "rejected",
                claimed_reviewer=run_launcher(context.run_id, context.run.tags),
                reason=config.reason or None,
                product=contract.name,
            )
            context.log.info(
                f"{contract.name}: candidates {', '.join(f'#{c.id}' for c in reviewed)} "
                f"{reviewed[0].status}, recorded as {reviewed[0].reviewed_by}"
            )
        waiting = list_candidates(engine, [contract.name])
        # Queries are logged masked, as the query log holds them.
        context.log.info(
            f"{contract.name}: {len(waiting)} candidates waiting for review"
            + "".join(f"\n#{c.id}: {c.query} -> {', '.join(c.expected_doc_ids)}" for c in waiting)
        )

    @dg.job(
        name=feedback_job_name(contract),
        description=(
            f"Collect evaluation queries for {contract.name} from callers' negative judgments "
            "into the review queue; accept or reject candidates (Launchpad config: action, "
            "ids, reason). Accepted ones are scored by the next release validation."
        ),
        tags={"domain": contract.domain},
    )
    def _job() -> None:
        _curate()

    return _job


def feedback_schedule(contract: DataProductContract) -> dg.ScheduleDefinition:
    @dg.schedule(
        name=f"collect_feedback_{contract.name}",
        cron_schedule=COLLECT_CRON,
        job=feedback_job(contract),
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=(
            f"Collects {contract.name}'s candidate evaluation queries when a negative judgment "
            "naming it waits; once per newest judgment."
        ),
    )
    def _tick(
        context: dg.ScheduleEvaluationContext, index_store: IndexStore
    ) -> dg.RunRequest | dg.SkipReason:
        newest = newest_uncollected(index_store.engine, contract.name)
        if newest is None:
            return dg.SkipReason(f"no negative judgment naming {contract.name} waits")
        return dg.RunRequest(run_key=f"judgment-{newest}")

    return _tick
