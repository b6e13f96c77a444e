"""The product as a user runs it: a private copy of the shipped products, `mesh-rag demo`, then
`mesh-rag ui` as a black box that answers GraphQL on a port. Every helper acts or looks the way
a user can: the command line, the GraphQL API the Dagster UI uses, and the source systems
(the catalog's PostgreSQL table, the policy folder, the S3 landing zone)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import boto3
import psutil
import yaml
from sqlalchemy import Engine, create_engine, text

from mesh_rag_pipelines_tests.real_docs import copy_real_folder

SHIPPED_PRODUCTS = Path(__file__).resolve().parents[2] / "mesh_rag_pipelines" / "products"
MESH_RAG = str(Path(sys.executable).parent / "mesh-rag")
EVERY_MINUTE = "* * * * *"
REQUIRED_DAEMONS = ("SENSOR", "ASSET", "QUEUED_RUN_COORDINATOR")
ACTIVE_RUN_STATUSES = ["QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING"]
FINISHED_RUN_STATUSES = {"SUCCESS", "FAILURE", "CANCELED"}
AUTOMATION_SENSOR = "default_automation_condition_sensor"
SHIPPED_BUCKET = "bucket: northwind-landing"
REAL_DOCS_PRODUCT = "system_docs"
REAL_DOCS_WANTED = 60
REAL_DOCS_MINIMUM = 30

T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T],
    timeout: float,
    what: str,
    interval: float = 1.0,
    explain: Callable[[], str] | None = None,
) -> T:
    """Poll until `predicate` returns something truthy, and return that. A timeout names what
    was awaited (and what `explain` says was seen instead), so that a failure reads as the
    behaviour that did not happen."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            seen = f"\n{explain()}" if explain else ""
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}{seen}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def copy_products(target: Path, bucket: str) -> Path:
    """A private copy of the shipped products, so that contracts and sample files can be edited:
    a polled source on a cron is polled every minute (a `poll_interval` is kept: the shipped
    ones are shorter), the landing zone has a bucket of its own, which the platform policy
    beside the contracts (where there is one) grants. Each contract names its sample data
    relatively, so the copy reads its own copy of them."""
    shutil.copytree(SHIPPED_PRODUCTS, target, ignore=shutil.ignore_patterns("__pycache__"))
    for contract in target.rglob("defs.yaml"):
        every_minute = f'poll_cron: "{EVERY_MINUTE}"'
        contract.write_text(re.sub(r'poll_cron: "[^"]*"', every_minute, contract.read_text()))
    for path in [*target.rglob("defs.yaml"), target / "platform_policy.yaml"]:
        if path.exists():
            path.write_text(path.read_text().replace(SHIPPED_BUCKET, f"bucket: {bucket}"))
    add_real_docs_product(target / "people" / REAL_DOCS_PRODUCT)
    return target


def add_real_docs_product(folder: Path) -> list[str]:
    """A `files` product of the people domain (whose granted folder holds it) over real text
    files of this machine, several named alike but for their extension, read with the
    recursive pattern `**/*`; the files' relative paths, which are their document ids."""
    documents = copy_real_folder(folder / "documents", REAL_DOCS_WANTED, REAL_DOCS_MINIMUM)
    shipped = (SHIPPED_PRODUCTS / "people" / "hr_policies" / "defs.yaml").read_text()
    contract = yaml.safe_load(shipped)
    contract["attributes"].update(
        name=REAL_DOCS_PRODUCT,
        description="The machine's package documentation: READMEs, changelogs, copyrights.",
        document_type="doc",
        source={"kind": "files", "path": "documents", "pattern": "**/*"},
        retrieval={"max_age": "3650d", "allowed_document_types": ["doc"]},
        golden_queries=[],
    )
    contract["attributes"]["schema"]["metadata_fields"] = []
    (folder / "defs.yaml").write_text(yaml.safe_dump(contract, sort_keys=False))
    return documents


def user_environment(home: Path, products: Path) -> dict[str, str]:
    """The shell of a user who exported MESH_RAG_PROFILE=local, with this session's home and
    contracts folder; nothing of the test process's own store, instance or settings."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("MESH_RAG_") and key != "DAGSTER_HOME"
    }
    env.update(
        MESH_RAG_PROFILE="local", MESH_RAG_HOME=str(home), MESH_RAG_CONTRACTS_DIR=str(products)
    )
    return env


# --- GraphQL, as the Dagster UI speaks it ---------------------------------------------------


class GraphQLError(AssertionError):
    """The API answered with errors, or with a union member that is an error."""


def graphql_request(url: str, query: str, variables: dict[str, Any] | None = None) -> Any:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(f"{url}/graphql", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as reply:
        answer = json.load(reply)
    if answer.get("errors"):
        raise GraphQLError(json.dumps(answer["errors"], indent=2)[:3000])
    return answer["data"]


def answers_graphql(url: str) -> bool:
    try:
        return bool(graphql_request(url, "{ version }"))
    except (OSError, GraphQLError, ValueError):
        return False


METADATA_ENTRY = """
  label
  __typename
  ... on TextMetadataEntry { text }
  ... on MarkdownMetadataEntry { mdStr }
  ... on IntMetadataEntry { intRepr }
  ... on FloatMetadataEntry { floatRepr }
  ... on BoolMetadataEntry { boolValue }
  ... on JsonMetadataEntry { jsonString }
  ... on PathMetadataEntry { path }
  ... on UrlMetadataEntry { url }
  ... on TimestampMetadataEntry { timestamp }
"""

WORKSPACE = """
{ workspaceOrError { __typename
  ... on PythonError { message }
  ... on Workspace { locationEntries { name loadStatus locationOrLoadError { __typename
    ... on PythonError { message causes { message } }
    ... on RepositoryLocation { repositories { name
      sensors { name sensorType sensorState { id status } } } } } } } } }"""

DAEMONS = "{ instance { daemonHealth { allDaemonStatuses { daemonType healthy required } } } }"

SENSOR_TICKS = """
query Ticks($selector: SensorSelector!, $limit: Int) { sensorOrError(sensorSelector: $selector) {
  __typename ... on PythonError { message }
  ... on Sensor { sensorState { ticks(limit: $limit) { status timestamp
    error { message } } } } } }"""

RESET_SENSOR = """
mutation Reset($selector: SensorSelector!) { resetSensor(sensorSelector: $selector) {
  __typename ... on PythonError { message } ... on Sensor { sensorState { status } } } }"""

START_SENSOR = """
mutation Start($selector: SensorSelector!) { startSensor(sensorSelector: $selector) {
  __typename ... on PythonError { message } ... on Sensor { sensorState { status } } } }"""

STOP_SENSOR = """
mutation Stop($id: String!) { stopSensor(id: $id) {
  __typename ... on PythonError { message }
  ... on StopSensorMutationResult { instigationState { status } } } }"""

RUNS = """
query Runs($filter: RunsFilter, $limit: Int) { runsOrError(filter: $filter, limit: $limit) {
  __typename ... on PythonError { message }
  ... on Runs { results { runId jobName status creationTime startTime endTime
    tags { key value } } } } }"""

RUN_ERRORS = """
query RunErrors($runId: ID!) { runOrError(runId: $runId) { __typename
  ... on Run { eventConnection(limit: 10000) { events { __typename
    ... on MessageEvent { message level }
    ... on ErrorEvent { error { message causes { message } } } } } } } }"""

STALE_STATUS = """
query Stale($key: AssetKeyInput!, $partitions: [String!]) { assetNodes(assetKeys: [$key]) {
  staleStatusByPartition(partitions: $partitions) } }"""

MATERIALIZATIONS = f"""
query Materializations($key: AssetKeyInput!, $partitions: [String!], $after: String,
                      $limit: Int) {{
  assetOrError(assetKey: $key) {{ __typename
    ... on Asset {{ assetMaterializations(partitions: $partitions, afterTimestampMillis: $after,
                                         limit: $limit) {{
      runId timestamp partition metadataEntries {{ {METADATA_ENTRY} }} }} }} }} }}"""

CHECK_EXECUTIONS = f"""
query Checks($key: AssetKeyInput!, $check: String!, $partition: String, $limit: Int!) {{
  assetCheckExecutions(assetKey: $key, checkName: $check, partition: $partition,
                       limit: $limit) {{
    runId status timestamp partition
    evaluation {{ severity success description metadataEntries {{ {METADATA_ENTRY} }} }} }} }}"""

RELOAD_LOCATION = """
mutation Reload($name: String!) { reloadRepositoryLocation(repositoryLocationName: $name) {
  __typename ... on PythonError { message } ... on WorkspaceLocationEntry { loadStatus } } }"""

LAUNCH_RUN = """
mutation Launch($params: ExecutionParams!) { launchRun(executionParams: $params) {
  __typename
  ... on LaunchRunSuccess { run { runId } }
  ... on PythonError { message }
  ... on RunConfigValidationInvalid { errors { message } }
  ... on PipelineNotFoundError { message }
  ... on InvalidSubsetError { message } } }"""


def asset_key(asset_path: str) -> dict[str, list[str]]:
    """`hr_policies/chunks` as GraphQL's AssetKeyInput."""
    return {"path": asset_path.split("/")}


def metadata_values(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Metadata entries as label -> plain value, the way the UI shows them."""
    fields = ("text", "mdStr", "intRepr", "floatRepr", "boolValue", "jsonString", "path", "url")
    values: dict[str, Any] = {}
    for entry in entries:
        found = [entry[name] for name in fields if name in entry]
        values[entry["label"]] = found[0] if found else entry.get("timestamp", entry["__typename"])
    return values


@dataclass(frozen=True)
class Location:
    name: str
    load_status: str
    error: str | None
    repositories: list[dict[str, Any]] = field(default_factory=list)

    @property
    def loaded(self) -> bool:
        return self.load_status == "LOADED" and self.error is None


@dataclass(frozen=True)
class Sensor:
    location: str
    repository: str
    name: str
    sensor_type: str
    status: str
    state_id: str

    def selector(self) -> dict[str, str]:
        return {
            "repositoryLocationName": self.location,
            "repositoryName": self.repository,
            "sensorName": self.name,
        }


@dataclass(frozen=True)
class Run:
    run_id: str
    job_name: str
    status: str
    created: float
    tags: dict[str, str]

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_RUN_STATUSES


@dataclass(frozen=True)
class Materialization:
    run_id: str
    timestamp: float
    partition: str | None
    metadata: dict[str, Any]


@dataclass(frozen=True)
class CheckExecution:
    run_id: str
    status: str
    timestamp: float
    partition: str | None
    severity: str | None
    success: bool | None
    metadata: dict[str, Any]


def _run(raw: dict[str, Any]) -> Run:
    tags = {tag["key"]: tag["value"] for tag in raw["tags"]}
    return Run(raw["runId"], raw["jobName"], raw["status"], raw["creationTime"], tags)


def _check_execution(raw: dict[str, Any]) -> CheckExecution:
    evaluation = raw["evaluation"] or {}
    return CheckExecution(
        raw["runId"],
        raw["status"],
        raw["timestamp"],
        raw["partition"],
        evaluation.get("severity"),
        evaluation.get("success"),
        metadata_values(evaluation.get("metadataEntries", [])),
    )


def _location(raw: dict[str, Any]) -> Location:
    loaded = raw["locationOrLoadError"] or {}
    error = None
    if loaded.get("__typename") == "PythonError":
        error = "\n".join([loaded["message"], *(c["message"] for c in loaded["causes"])])
    return Location(raw["name"], raw["loadStatus"], error, loaded.get("repositories", []))


# --- the `mesh-rag ui` process ------------------------------------------------------------


class UiProcess:
    """`mesh-rag ui --port P` in a session of its own. What it starts inside is its business:
    only the command, the port and GraphQL answering there are relied on."""

    def __init__(self, env: dict[str, str], cwd: Path, port: int, log: Path):
        self.port, self.log = port, log
        self.url = f"http://127.0.0.1:{port}"
        self.seen: dict[int, psutil.Process] = {}
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [MESH_RAG, "ui", "--port", str(port)],
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def process_tree(self) -> list[psutil.Process]:
        """`mesh-rag ui` and every process below it now; each is remembered, so that one left
        behind by a parent that exited can still be stopped."""
        try:
            root = psutil.Process(self.pid)
            tree = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            tree = []
        self.seen.update((process.pid, process) for process in tree)
        return tree

    def terminate(self, grace: float = 30) -> list[psutil.Process]:
        """SIGTERM to `mesh-rag ui` alone, as a service manager or a closed terminal sends it;
        the processes of its tree still alive after `grace` seconds."""
        tree = self.process_tree()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        _, alive = psutil.wait_procs(tree, timeout=grace)
        self.process.poll()
        return alive

    def stop(self, grace: float = 30) -> list[psutil.Process]:
        """Terminate; then kill every process ever seen in the tree that is still alive, with
        its process group (what it started since); the processes that had to be killed."""
        self.terminate(grace)
        leftovers = [process for process in self.seen.values() if process.is_running()]
        groups = {group for p in leftovers if (group := _process_group(p)) is not None}
        for group in groups - {os.getpgrp()}:
            _signal_group(group, signal.SIGKILL)
        for process in leftovers:
            _kill(process)
        psutil.wait_procs(leftovers, timeout=10)
        self.process.wait(timeout=10)
        return leftovers

    def log_tail(self, size: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-size:]


def _process_group(process: psutil.Process) -> int | None:
    try:
        return os.getpgid(process.pid)
    except (ProcessLookupError, psutil.NoSuchProcess):
        return None


def _signal_group(group: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, sig)


def _kill(process: psutil.Process) -> None:
    with contextlib.suppress(psutil.NoSuchProcess):
        process.kill()


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


# --- the session ------------------------------------------------------------------------


class Acceptance:
    """One user's machine: a home, a contracts folder, the embedded services, `mesh-rag ui`."""

    def __init__(self, root: Path):
        self.root = root
        self.home = root / "home"
        self.products = root / "products"
        self.bucket = f"acceptance-{uuid.uuid4().hex[:10]}"
        self.env = user_environment(self.home, self.products)
        self.ui: UiProcess | None = None
        self.store_url = ""
        self.s3_url = ""

    # --- lifecycle

    def prepare(self) -> None:
        self.home.mkdir(parents=True)
        copy_products(self.products, self.bucket)

    def run_demo(self) -> None:
        done = self.cli("demo", timeout=3600)
        (self.home / "demo.log").write_text(done.stdout + done.stderr)
        assert done.returncode == 0, f"mesh-rag demo failed:\n{done.stdout[-3000:]}"
        self.read_service_addresses()

    def read_service_addresses(self) -> None:
        """The store and S3 endpoint, as `mesh-rag services start` prints them."""
        printed = self.cli_ok("services", "start").stdout
        self.store_url = re.search(r"^database: (\S+)$", printed, re.M).group(1)  # type: ignore[union-attr]
        self.s3_url = re.search(r"^s3: (\S+)$", printed, re.M).group(1)  # type: ignore[union-attr]

    def start_ui(self, port: int, log_name: str = "ui.log") -> UiProcess:
        self.ui = UiProcess(self.env, self.root, port, self.home / log_name)
        return self.ui

    def wait_until_ready(self, timeout: float = 900) -> None:
        """GraphQL answers, every code location is loaded (or failed), the daemons are up."""
        assert self.ui is not None, "mesh-rag ui is not started"
        wait_for(self._ui_answers, timeout, "mesh-rag ui to answer GraphQL", interval=2)
        wait_for(self.locations_settled, timeout, "every code location to load", interval=2)
        wait_for(self.daemons_healthy, timeout, f"healthy daemons {REQUIRED_DAEMONS}", interval=2)
        self.ui.process_tree()

    def _ui_answers(self) -> bool:
        assert self.ui is not None, "mesh-rag ui is not started"
        if self.ui.process.poll() is not None:
            raise AssertionError(f"mesh-rag ui exited:\n{self.ui.log_tail()}")
        return answers_graphql(self.ui.url)

    def stop(self) -> None:
        """Stop `mesh-rag ui`, then the embedded services as a user does; should that command
        fail, their processes are stopped anyway (so that none outlives the session), and the
        failure is raised."""
        if "engine" in self.__dict__:
            self.engine.dispose()
        if self.ui is not None:
            self.ui.stop()
        if not self.home.exists():
            return
        done = self.cli("services", "stop", timeout=120)
        if done.returncode != 0:
            self.stop_services_by_pid()
            raise AssertionError(f"mesh-rag services stop failed:\n{done.stderr[-3000:]}")

    def stop_services_by_pid(self) -> None:
        """The embedded PostgreSQL (a fast shutdown) and the S3 server, by the pids they wrote."""
        postmaster = self.home / "pg" / "postmaster.pid"
        if postmaster.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(postmaster.read_text().split()[0]), signal.SIGINT)
        s3_state = self.home / "s3.json"
        if s3_state.exists():
            _signal_group(json.loads(s3_state.read_text())["pid"], signal.SIGTERM)

    # --- the command line

    def cli(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        """`mesh-rag ARGS` as typed in the user's shell."""
        return subprocess.run(
            [MESH_RAG, *args],
            env=self.env,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def cli_ok(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        done = self.cli(*args, timeout=timeout)
        assert done.returncode == 0, (
            f"mesh-rag {' '.join(args)} exited {done.returncode}:\n"
            f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
        return done

    def query_json(
        self, query_text: str, group: str, product: str | None = None, k: int = 10
    ) -> dict[str, Any]:
        """`mesh-rag query TEXT --group G [--product P] -k K --json`, parsed."""
        scope = ["--product", product] if product else []
        done = self.cli_ok("query", query_text, "--group", group, "-k", str(k), "--json", *scope)
        return json.loads(done.stdout)

    def hits_of(
        self, doc_id: str, query_text: str, group: str, product: str, k: int = 10
    ) -> list[dict[str, Any]]:
        """The hits of one document among a query's results."""
        found = self.query_json(query_text, group, product, k)
        return [hit for hit in found["hits"] if hit["doc_id"] == doc_id]

    def products_json(self) -> dict[str, dict[str, Any]]:
        """`mesh-rag products --json`, by product."""
        rows = json.loads(self.cli_ok("products", "--json").stdout)
        return {row["product"]: row for row in rows}

    # --- GraphQL

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> Any:
        assert self.ui is not None, "mesh-rag ui is not started"
        return graphql_request(self.ui.url, query, variables)

    def locations(self) -> dict[str, Location]:
        workspace = self.graphql(WORKSPACE)["workspaceOrError"]
        if workspace["__typename"] != "Workspace":
            raise GraphQLError(workspace.get("message"))
        return {entry["name"]: _location(entry) for entry in workspace["locationEntries"]}

    def locations_settled(self) -> bool:
        locations = self.locations()
        return bool(locations) and all(loc.load_status == "LOADED" for loc in locations.values())

    def daemons(self) -> dict[str, bool]:
        statuses = self.graphql(DAEMONS)["instance"]["daemonHealth"]["allDaemonStatuses"]
        return {status["daemonType"]: bool(status["healthy"]) for status in statuses}

    def daemons_healthy(self) -> bool:
        health = self.daemons()
        return all(health.get(daemon) for daemon in REQUIRED_DAEMONS)

    def all_sensors(self) -> list[Sensor]:
        return [
            Sensor(
                location.name,
                repository["name"],
                sensor["name"],
                sensor["sensorType"],
                sensor["sensorState"]["status"],
                sensor["sensorState"]["id"],
            )
            for location in self.locations().values()
            for repository in location.repositories
            for sensor in repository["sensors"]
        ]

    def sensors(self) -> dict[tuple[str, str], str]:
        """(location, sensor name) -> RUNNING or STOPPED, over every loaded location."""
        return {(s.location, s.name): s.status for s in self.all_sensors()}

    def sensor(self, location: str, name: str) -> Sensor:
        (found,) = [s for s in self.all_sensors() if (s.location, s.name) == (location, name)]
        return found

    def sensor_ticks(self, location: str, name: str, limit: int = 5) -> list[dict[str, Any]]:
        """The sensor's latest ticks, newest first: status, timestamp, error."""
        selector = self.sensor(location, name).selector()
        found = self.graphql(SENSOR_TICKS, {"selector": selector, "limit": limit})
        return found["sensorOrError"]["sensorState"]["ticks"]

    def start_sensor(self, location: str, name: str) -> str:
        selector = self.sensor(location, name).selector()
        started = self.graphql(START_SENSOR, {"selector": selector})["startSensor"]
        if started["__typename"] != "Sensor":
            raise GraphQLError(str(started))
        return started["sensorState"]["status"]

    def reset_sensor(self, location: str, name: str) -> str:
        """Back to the status its code declares, as the UI's reset does."""
        selector = self.sensor(location, name).selector()
        reset = self.graphql(RESET_SENSOR, {"selector": selector})["resetSensor"]
        if reset["__typename"] != "Sensor":
            raise GraphQLError(str(reset))
        return reset["sensorState"]["status"]

    def stop_sensor(self, location: str, name: str) -> str:
        state_id = self.sensor(location, name).state_id
        stopped = self.graphql(STOP_SENSOR, {"id": state_id})["stopSensor"]
        if stopped["__typename"] != "StopSensorMutationResult":
            raise GraphQLError(str(stopped))
        return stopped["instigationState"]["status"]

    def runs(
        self,
        job_name: str | None = None,
        tags: dict[str, str] | None = None,
        since: float | None = None,
        statuses: list[str] | None = None,
        limit: int = 200,
    ) -> list[Run]:
        """Runs, newest first, with their status: of a job, with tags, created after `since`."""
        run_filter: dict[str, Any] = {}
        if job_name:
            run_filter["pipelineName"] = job_name
        if tags:
            run_filter["tags"] = [{"key": k, "value": v} for k, v in tags.items()]
        if since is not None:
            run_filter["createdAfter"] = since
        if statuses:
            run_filter["statuses"] = statuses
        found = self.graphql(RUNS, {"filter": run_filter, "limit": limit})["runsOrError"]
        if found["__typename"] != "Runs":
            raise GraphQLError(found.get("message"))
        return [_run(raw) for raw in found["results"]]

    def active_runs(self) -> list[Run]:
        return self.runs(statuses=ACTIVE_RUN_STATUSES)

    def run_errors(self, run_id: str) -> list[str]:
        """A run's error messages, for a failure to read like the run's own log."""
        run = self.graphql(RUN_ERRORS, {"runId": run_id})["runOrError"]
        events = run.get("eventConnection", {}).get("events", [])
        messages = [e["message"] for e in events if e.get("level") == "ERROR"]
        for error in (e["error"] for e in events if e.get("error")):
            messages += [error["message"], *(cause["message"] for cause in error["causes"])]
        return messages

    def wait_for_runs_to_finish(self, runs: list[Run], timeout: float) -> list[Run]:
        ids = {run.run_id for run in runs}

        def finished() -> list[Run]:
            current = [run for run in self.runs(limit=500) if run.run_id in ids]
            done = len(current) == len(ids) and all(run.finished for run in current)
            return current if done else []

        return wait_for(finished, timeout, f"runs {sorted(ids)} to finish", interval=2)

    def wait_until_idle(self, quiet: float = 45, timeout: float = 1200) -> None:
        """No run queued or in progress for `quiet` seconds on end: what a sensor or the
        automation daemon started has finished, and nothing new followed."""
        idle_since: float | None = None

        def quiet_long_enough() -> bool:
            nonlocal idle_since
            if self.active_runs():
                idle_since = None
                return False
            idle_since = idle_since or time.monotonic()
            return time.monotonic() - idle_since >= quiet

        wait_for(quiet_long_enough, timeout, f"{quiet:.0f} s without a run", interval=2)
        if self.ui is not None:
            self.ui.process_tree()

    def wait_for_first_ticks(self, timeout: float = 600) -> None:
        """Every running sensor has finished a tick: what the sources held at start is seen."""

        def ticked() -> bool:
            running = [s for s in self.all_sensors() if s.status == "RUNNING"]
            return all(
                any(tick["status"] != "STARTED" for tick in self.sensor_ticks(s.location, s.name))
                for s in running
            )

        wait_for(ticked, timeout, "a first tick of every running sensor", interval=3)

    def recorded_partitions(self, product: str, since: float) -> set[str]:
        """Shards whose new source version the product's sensor recorded after `since`."""
        recorded = self.materializations(f"{product}/source", since=since)
        return {m.partition for m in recorded if m.partition is not None}

    def synced_partitions(self, product: str, since: float) -> dict[str, Run]:
        """Shards whose embeddings a run created after `since` materialized, with that run,
        once it succeeded."""
        succeeded = {run.run_id: run for run in self.runs(since=since, statuses=["SUCCESS"])}
        return {
            m.partition: succeeded[m.run_id]
            for m in self.materializations(f"{product}/embeddings", since=since)
            if m.run_id in succeeded and m.partition is not None
        }

    def wait_for_sync(self, product: str, since: float, timeout: float) -> dict[str, Run]:
        """Wait until the product's sensor has recorded a change made at `since` and, for every
        shard it recorded, a run created after it has succeeded; those runs by shard."""

        def synced() -> dict[str, Run]:
            recorded = self.recorded_partitions(product, since)
            done = self.synced_partitions(product, since)
            return done if recorded and recorded <= set(done) else {}

        return wait_for(
            synced,
            timeout,
            f"{product}: a change made at {time.ctime(since)} recorded and synced",
            interval=3,
            explain=lambda: self.explain_sync(product, since),
        )

    def explain_sync(self, product: str, since: float) -> str:
        """What happened since a change: the shards recorded, the runs and their errors."""
        runs = self.runs(since=since)
        described = [f"{r.job_name}[{r.tags.get('dagster/partition')}]={r.status}" for r in runs]
        lines = [
            f"shards recorded by the sensor: {sorted(self.recorded_partitions(product, since))}",
            f"shards synced: {sorted(self.synced_partitions(product, since))}",
            f"runs since: {', '.join(described) or 'none'}",
        ]
        for run in runs:
            if run.status == "FAILURE":
                lines.append(f"{run.run_id}: " + " | ".join(self.run_errors(run.run_id))[:1500])
        return "\n".join(lines)

    def stale_status(self, asset_path: str, partitions: list[str]) -> dict[str, str]:
        """Partition -> STALE, FRESH or MISSING, as the asset's page shows it."""
        variables = {"key": asset_key(asset_path), "partitions": partitions}
        (node,) = self.graphql(STALE_STATUS, variables)["assetNodes"]
        return dict(zip(partitions, node["staleStatusByPartition"], strict=True))

    def materializations(
        self,
        asset_path: str,
        partitions: list[str] | None = None,
        since: float | None = None,
        limit: int = 100,
    ) -> list[Materialization]:
        """Materializations of an asset, newest first (runless ones, a sensor's, included)."""
        variables = {
            "key": asset_key(asset_path),
            "partitions": partitions,
            "after": str(int(since * 1000)) if since is not None else None,
            "limit": limit,
        }
        asset = self.graphql(MATERIALIZATIONS, variables)["assetOrError"]
        if asset["__typename"] != "Asset":
            return []
        return [
            Materialization(
                raw["runId"],
                int(raw["timestamp"]) / 1000,
                raw["partition"],
                metadata_values(raw["metadataEntries"]),
            )
            for raw in asset["assetMaterializations"]
        ]

    def latest_materialization_metadata(self, asset_path: str) -> dict[str, Any]:
        latest = self.materializations(asset_path, limit=1)
        assert latest, f"{asset_path} was never materialized"
        return latest[0].metadata

    def check_executions(
        self, asset_path: str, check_name: str, partition: str | None = None, limit: int = 50
    ) -> list[CheckExecution]:
        """Executions of an asset check, newest first."""
        variables = {
            "key": asset_key(asset_path),
            "check": check_name,
            "partition": partition,
            "limit": limit,
        }
        found = self.graphql(CHECK_EXECUTIONS, variables)["assetCheckExecutions"]
        return [_check_execution(raw) for raw in found]

    def latest_check_status(
        self, asset_path: str, check_name: str, partition: str | None = None
    ) -> CheckExecution | None:
        latest = self.check_executions(asset_path, check_name, partition, limit=1)
        return latest[0] if latest else None

    def reload_location(self, name: str, timeout: float = 600) -> Location:
        """Reload a code location, as its Reload button does; the location once loaded."""
        reloaded = self.graphql(RELOAD_LOCATION, {"name": name})["reloadRepositoryLocation"]
        if reloaded["__typename"] != "WorkspaceLocationEntry":
            raise GraphQLError(str(reloaded))

        def settled() -> Location | None:
            location = self.locations().get(name)
            return location if location and location.load_status == "LOADED" else None

        location = wait_for(settled, timeout, f"location {name} to reload", interval=2)
        assert location is not None
        return location

    def launch_run(
        self,
        location: str,
        job: str,
        run_config: dict[str, Any],
        partition: str | None = None,
    ) -> str:
        """Launch a job as the Launchpad does; the run's id."""
        (repository,) = self.locations()[location].repositories
        tags = [{"key": "dagster/partition", "value": partition}] if partition else []
        params = {
            "selector": {
                "repositoryLocationName": location,
                "repositoryName": repository["name"],
                "jobName": job,
            },
            "runConfigData": run_config,
            "executionMetadata": {"tags": tags},
        }
        launched = self.graphql(LAUNCH_RUN, {"params": params})["launchRun"]
        if launched["__typename"] != "LaunchRunSuccess":
            raise GraphQLError(str(launched))
        return launched["run"]["runId"]

    # --- the sources

    @cached_property
    def engine(self) -> Engine:
        return create_engine(self.store_url, pool_size=1, max_overflow=1)

    def psql(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        """One statement in its own transaction on the embedded PostgreSQL; its rows."""
        with self.engine.begin() as conn:
            result = conn.execute(text(sql), params)
            return [tuple(row) for row in result] if result.returns_rows else []

    @cached_property
    def s3(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.s3_url,
            aws_access_key_id="local",
            aws_secret_access_key="local",
            region_name="us-east-1",
        )

    def put_landing_object(self, key: str, body: str | bytes) -> None:
        """Write an object into this session's landing bucket, as an upstream exporter does."""
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=body)

    def product_dir(self, product: str) -> Path:
        (contract,) = [p for p in self.products.rglob("defs.yaml") if p.parent.name == product]
        return contract.parent

    def contract_path(self, product: str) -> Path:
        return self.product_dir(product) / "defs.yaml"

    def edit_contract(self, product: str, old: str, new: str) -> str:
        """Replace the one occurrence of `old` in the product's contract; the text before."""
        path = self.contract_path(product)
        before = path.read_text()
        assert before.count(old) == 1, f"{old!r} is not in {path} exactly once"
        path.write_text(before.replace(old, new))
        return before

    def sample_file(self, product: str, name: str) -> Path:
        return self.product_dir(product) / "sample_data" / name

    def write_sample_file(self, product: str, name: str, content: str) -> Path:
        path = self.sample_file(product, name)
        path.write_text(content)
        return path

    def delete_sample_file(self, product: str, name: str) -> None:
        self.sample_file(product, name).unlink()
