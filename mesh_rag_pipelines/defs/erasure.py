"""Right to be forgotten from the Launchpad: a job per product that erases documents by id."""

import dagster as dg

from mesh_rag_pipelines.contracts import DataProductContract
from mesh_rag_pipelines.defs.resources import IndexStore
from mesh_rag_pipelines.governance.erasure import forget


class ForgetDocuments(dg.Config):
    doc_ids: list[str]
    reason: str = ""


def forget_job_name(contract: DataProductContract) -> str:
    return f"forget_{contract.name}"


def forget_job(contract: DataProductContract) -> dg.JobDefinition:
    @dg.op(name=f"{contract.name}_forget")
    def _forget(
        context: dg.OpExecutionContext, config: ForgetDocuments, index_store: IndexStore
    ) -> None:
        actor = context.run.tags.get("dagster/user", "dagster")
        for doc_id in config.doc_ids:
            done = forget(
                index_store.engine, contract, doc_id, actor=actor, reason=config.reason or None
            )
            context.log.info(
                f"{contract.name}/{doc_id} forgotten: {done.index_rows_removed} index rows in "
                f"{len(done.versions)} versions, {done.cache_entries_removed} cache entries"
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
