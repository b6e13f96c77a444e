"""Right to be forgotten from the Launchpad: a job per product that erases documents by id."""

from collections.abc import Mapping

import dagster as dg

from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.governance.erasure import forget
from mesh_rag_pipelines.orchestration.resources import IndexStore


class ForgetDocuments(dg.Config):
    doc_ids: list[str]
    reason: str = ""


USER_TAG = "dagster/user"


def run_launcher(run_id: str, tags: Mapping[str, str]) -> str:
    """Who launched a run, as far as Dagster knows: the `dagster/user` tag, which Dagster+ sets
    (open-source Dagster sets none, and any launcher may add it); always with the run's id."""
    user = tags.get(USER_TAG)
    if user:
        return f"dagster run {run_id}, launched by {user} (run tag {USER_TAG})"
    return (
        f"dagster run {run_id}, launcher unknown (no {USER_TAG} tag: open-source Dagster does "
        "not record who launched a run)"
    )


def forget_job_name(contract: DataProductContract) -> str:
    return f"forget_{contract.name}"


def forget_job(contract: DataProductContract) -> dg.JobDefinition:
    @dg.op(name=f"{contract.name}_forget")
    def _forget(
        context: dg.OpExecutionContext, config: ForgetDocuments, index_store: IndexStore
    ) -> None:
        claimed = run_launcher(context.run_id, context.run.tags)
        for doc_id in config.doc_ids:
            done = forget(
                index_store.engine,
                contract,
                doc_id,
                claimed_actor=claimed,
                reason=config.reason or None,
            )
            # The log names the document as the audit does (masked if its id holds PII).
            context.log.info(
                f"{contract.name}/{done.doc_id} forgotten: {done.index_rows_removed} index rows "
                f"in {len(done.versions)} versions, {done.cache_entries_removed} cache entries; "
                f"audited as database role {done.actor_role}, claimed: {done.actor_claimed}"
            )

    @dg.job(
        name=forget_job_name(contract),
        description=(
            f"Erase documents of {contract.name} from every index version, chunk set, cache and "
            "state (right to be forgotten); an audit row records each erasure."
        ),
        tags={"domain": contract.domain},
    )
    def _job() -> None:
        _forget()

    return _job
