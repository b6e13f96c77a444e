"""A run worker that is ready before its run exists: it imports Dagster, the project, PyTorch,
the embedding model and the PII analyzer, then waits on stdin for one run, executes it exactly
as `dagster api execute_run` does, and exits. One run per process, as Dagster's default launcher
does it; only the seconds of imports and model loading move out of the run's path.
"""

from __future__ import annotations

import sys

READY = "ready"


def warm_up() -> None:
    """Everything a sync run of any product loads first."""
    import dagster  # noqa: F401

    import mesh_rag_pipelines.locations  # noqa: F401
    import mesh_rag_pipelines.orchestration.product  # noqa: F401
    from mesh_rag_pipelines.contracts import EmbeddingSpec
    from mesh_rag_pipelines.contracts.model import LOCAL_MODEL_DIMENSIONS
    from mesh_rag_pipelines.embedding.local_model import LocalSentenceTransformer
    from mesh_rag_pipelines.governance.pii import PiiMasker

    for model, dimensions in LOCAL_MODEL_DIMENSIONS.items():
        LocalSentenceTransformer.shared(EmbeddingSpec(model=model, dimensions=dimensions)).embed(
            ["warm up"]
        )
    PiiMasker({"EMAIL_ADDRESS": "placeholder"}).text("warm@example.com")


def execute(serialized_args: str) -> int:
    """Execute the run named by serialized `ExecuteRunArgs`, as `dagster api execute_run`."""
    from dagster._cli.api import _execute_run_command_body
    from dagster._core.instance import DagsterInstance
    from dagster._grpc.types import ExecuteRunArgs
    from dagster._serdes import deserialize_value
    from dagster._utils.interrupts import capture_interrupts

    args = deserialize_value(serialized_args, ExecuteRunArgs)
    with capture_interrupts(), DagsterInstance.from_ref(args.instance_ref) as instance:  # type: ignore[arg-type]
        return _execute_run_command_body(
            args.run_id, instance, lambda _event: None, set_exit_code_on_failure=True
        )


def main() -> None:
    warm_up()
    print(READY, flush=True)
    line = sys.stdin.readline()
    if not line.strip():  # the launcher went away before handing over a run
        return
    sys.exit(execute(line))


if __name__ == "__main__":
    main()
