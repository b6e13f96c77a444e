"""A run launcher for an instance on one machine (`mesh-rag ui`, a single host) whose runs start
warm.

Dagster's default launcher starts each run in a new Python process, which then imports Dagster,
the project, PyTorch and the PII analyzer and loads the embedding model: most of the seconds
between a change landing and the run applying it. This launcher hands each run to a worker that
has done all that already, from the pool `mesh-rag ui` keeps (runs/pool.py); without one (a
plain `dagster dev` on this instance) it starts a worker of its own, as cold as Dagster's. Each
worker executes one run, exactly as `dagster api execute_run` does, and exits: runs stay
isolated from each other. Deployments that scale out keep their own launcher (ECS, Kubernetes).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster._check as check
from dagster._core.launcher import LaunchRunContext, RunLauncher
from dagster._core.launcher.base import CheckRunHealthResult, WorkerStatus
from dagster._core.storage.dagster_run import DagsterRun
from dagster._grpc.types import ExecuteRunArgs
from dagster._serdes import ConfigurableClass, ConfigurableClassData, serialize_value

from mesh_rag_pipelines.runs.pool import hand_over, request_run, start_worker

WORKER_PID_TAG = "mesh_rag/worker_pid"


class WarmRunLauncher(RunLauncher, ConfigurableClass):
    def __init__(self, inst_data: ConfigurableClassData | None = None):
        self._inst_data = inst_data
        super().__init__()

    @property
    def inst_data(self) -> ConfigurableClassData | None:
        return self._inst_data

    @classmethod
    def config_type(cls) -> dict[str, Any]:
        return {}

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]
    ) -> WarmRunLauncher:
        return cls(inst_data=inst_data)

    def launch_run(self, context: LaunchRunContext) -> None:
        run = context.dagster_run
        args = serialize_value(
            ExecuteRunArgs(
                job_origin=check.not_none(run.job_code_origin),
                run_id=run.run_id,
                instance_ref=self._instance.get_ref(),
                set_exit_code_on_failure=True,
            )
        )
        pid = request_run(Path(self._instance.root_directory), args)
        if pid is None:
            pid = hand_over(start_worker(), args)
        self._instance.add_run_tags(run.run_id, {WORKER_PID_TAG: str(pid)})

    def _worker_pid(self, run: DagsterRun) -> int | None:
        pid = run.tags.get(WORKER_PID_TAG, "")
        return int(pid) if pid.isdigit() else None

    def terminate(self, run_id: str) -> bool:
        run = self._instance.get_run_by_id(run_id)
        pid = self._worker_pid(run) if run else None
        if run is None or pid is None:
            return False
        self._instance.report_run_canceling(run)
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return False
        return True

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        pid = self._worker_pid(run)
        if pid is None:
            return CheckRunHealthResult(WorkerStatus.UNKNOWN, "no worker recorded")
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return CheckRunHealthResult(WorkerStatus.NOT_FOUND, f"run worker {pid} is gone")
        return CheckRunHealthResult(WorkerStatus.RUNNING)
