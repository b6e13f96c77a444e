"""The production topology on loopback: Dagster instance storage in PostgreSQL (dagster-postgres,
`infra/production/dagster.yaml`), a gRPC code server for the people domain, the webserver and
the daemon, each its own process, none in the local profile. A backfill over every shard of a
product is launched through the webserver's GraphQL API and run by the queued coordinator within
its concurrency limit; every run succeeds and the index equals a build from scratch."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from sqlalchemy import Engine

from mesh_rag_pipelines.contracts import load_contracts
from mesh_rag_pipelines.embedding import Embedder
from mesh_rag_pipelines.services.local_s3 import free_port
from mesh_rag_pipelines.store.database import engine_for
from mesh_rag_pipelines_tests.helpers import assert_same_index, index_rows, source_ctx, sync_all

INFRA = Path(__file__).resolve().parents[1] / "infra" / "production"
BIN = Path(sys.executable).parent
LIMIT = 2  # concurrency.runs.max_concurrent_runs in infra/production/dagster.yaml

LAUNCH = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
  }
}"""
STATUS = """
query Backfill($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    ... on PartitionBackfill { status runs { runId status } }
  }
}"""
LOCATIONS = """{ workspaceOrError { ... on Workspace { locationEntries {
  name loadStatus locationOrLoadError { __typename } } } } }"""
DAEMONS = "{ instance { daemonHealth { allDaemonStatuses { daemonType healthy } } } }"


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _wait(ready: Callable[[], bool], what: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.5)
    raise TimeoutError(what)


class Deployment:
    """The processes of a deployment, each in its own process group (stopped as a whole)."""

    def __init__(self, home: Path, env: dict[str, str]):
        self.home, self.env = home, env
        self.processes: list[subprocess.Popen[bytes]] = []
        self.webserver = f"http://127.0.0.1:{free_port()}"

    def start(self, name: str, *command: str) -> None:
        log = (self.home / f"{name}.log").open("wb")
        self.processes.append(
            subprocess.Popen(
                command, cwd=self.home, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )  # fmt: skip

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> Any:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(
            f"{self.webserver}/graphql", body, {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as reply:
            answer = json.load(reply)
        assert not answer.get("errors"), answer["errors"]
        return answer["data"]

    def answers(self, query: str) -> Any:
        try:
            return self.graphql(query)
        except OSError:
            return None

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def log(self, name: str) -> str:
        return (self.home / f"{name}.log").read_text(errors="replace")[-3000:]


@pytest.fixture
def deployment(
    tmp_path: Path, new_database: Callable[[], str], database_url: str
) -> Iterator[Deployment]:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(INFRA / "dagster.yaml", home / "dagster.yaml")
    grpc_port = free_port()
    (home / "workspace.yaml").write_text(
        "load_from:\n  - grpc_server: "
        f"{{host: 127.0.0.1, port: {grpc_port}, location_name: people}}\n"
    )
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("MESH_RAG_") and key != "DAGSTER_HOME"
    }
    env.update(
        DAGSTER_HOME=str(home),
        DAGSTER_POSTGRES_URL=new_database(),
        MESH_RAG_DATABASE_URL=database_url,
    )
    deployment = Deployment(home, env)
    port = deployment.webserver.rsplit(":", 1)[1]
    try:
        deployment.start(
            "code_server", str(BIN / "dagster"), "api", "grpc", "-h", "127.0.0.1",
            "-p", str(grpc_port), "-m", "mesh_rag_pipelines.locations", "-a", "people",
        )  # fmt: skip
        _wait(lambda: _listening(grpc_port), "code server", 240)
        deployment.start(
            "webserver", str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", port,
            "-w", "workspace.yaml",
        )  # fmt: skip
        deployment.start("daemon", str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml")
        yield deployment
    finally:
        deployment.stop()


def _location_loaded(deployment: Deployment) -> bool:
    data = deployment.answers(LOCATIONS)
    entries = data and data["workspaceOrError"].get("locationEntries")
    return bool(entries) and all(
        (entry["loadStatus"], entry["locationOrLoadError"]["__typename"])
        == ("LOADED", "RepositoryLocation")
        for entry in entries
    )


def _daemons_healthy(deployment: Deployment) -> bool:
    data = deployment.answers(DAEMONS)
    if not data:
        return False
    health = {d["daemonType"]: d["healthy"] for d in data["instance"]["daemonHealth"][
        "allDaemonStatuses"]}  # fmt: skip
    return bool(health.get("QUEUED_RUN_COORDINATOR") and health.get("BACKFILL"))


def _all_finished(instance: dg.DagsterInstance) -> bool:
    return all(run.is_finished for run in instance.get_runs())


def _most_at_once(runs: list[dg.DagsterRun], instance: dg.DagsterInstance) -> int:
    spans = []
    for run in runs:
        record = instance.get_run_record_by_id(run.run_id)
        assert record is not None and record.start_time and record.end_time
        spans.append((record.start_time, record.end_time))
    return max(sum(1 for s, e in spans if s <= start < e) for start, _ in spans)


def test_a_backfill_through_graphql_on_the_production_topology(
    deployment: Deployment, engine: Engine, new_database: Callable[[], str], minilm: Embedder
) -> None:
    _wait(lambda: _location_loaded(deployment), "code location", 240)
    _wait(lambda: _daemons_healthy(deployment), "daemon", 240)
    params = {
        "assetSelection": [{"path": ["hr_policies", step]} for step in ("chunks", "embeddings")],
        "allPartitions": True,
        "title": "hr_policies: every shard",
    }  # fmt: skip
    launched = deployment.graphql(LAUNCH, {"params": params})["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    backfill_id = launched["backfillId"]

    def finished() -> bool:
        backfill = deployment.graphql(STATUS, {"id": backfill_id})["partitionBackfillOrError"]
        return backfill["status"] in (
            "COMPLETED",
            "COMPLETED_SUCCESS",
            "COMPLETED_FAILED",
            "FAILED",
        )

    try:
        _wait(finished, "backfill", 600)
    except TimeoutError:
        pytest.fail(deployment.log("daemon"))
    backfill = deployment.graphql(STATUS, {"id": backfill_id})["partitionBackfillOrError"]
    assert backfill["status"] in ("COMPLETED", "COMPLETED_SUCCESS"), deployment.log("daemon")

    os.environ["DAGSTER_POSTGRES_URL"] = deployment.env["DAGSTER_POSTGRES_URL"]
    try:
        with dg.DagsterInstance.from_config(str(deployment.home)) as instance:
            runs = instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
            assert sorted(run.tags["dagster/partition"] for run in runs) == ["00", "01", "02", "03"]
            # The backfill's materializations wake the automation sensor (the release asset):
            # the runs it requests must finish too, and succeed.
            _wait(lambda: _all_finished(instance), "runs requested by automation", 300)
            everything = instance.get_runs()
            assert {run.status for run in everything} == {dg.DagsterRunStatus.SUCCESS}
            assert 1 <= _most_at_once(everything, instance) <= LIMIT
    finally:
        del os.environ["DAGSTER_POSTGRES_URL"]

    (contract,) = [c for c in load_contracts() if c.name == "hr_policies"]
    scratch = engine_for(new_database())
    sync_all(contract, source_ctx(scratch), minilm)
    assert_same_index(index_rows(engine, "hr_policies"), index_rows(scratch, "hr_policies"))
