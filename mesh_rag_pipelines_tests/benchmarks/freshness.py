"""Freshness lag: from a change file landing in S3 to its ticket being returned by a query.

The whole automation path runs for real: `dagster dev` (webserver and daemon) in its own process
group, the support-ticket landing sensor, queued runs launched as subprocesses, the embedding
index, and retrieval. Events land one at a time at a random offset into the sensor's interval,
so the lags sample every phase of the tick.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

from mesh_rag_pipelines.connections import s3_client, s3_endpoint_url
from mesh_rag_pipelines.contracts import DataProductContract, load_contracts
from mesh_rag_pipelines.embedding import embedder_for
from mesh_rag_pipelines.retrieval import Caller, search
from mesh_rag_pipelines.samples import ensure_bucket
from mesh_rag_pipelines.services.local_s3 import stop_local_s3
from mesh_rag_pipelines.store.database import engine_for
from mesh_rag_pipelines_tests.benchmarks import results
from mesh_rag_pipelines_tests.benchmarks.database import benchmark_database
from mesh_rag_pipelines_tests.helpers import grant, shipped_contract

PRODUCT = "support_tickets"
DAGSTER_YAML = """\
telemetry:
  enabled: false
run_coordinator:
  module: dagster._core.run_coordinator
  class: QueuedRunCoordinator
  config:
    max_concurrent_runs: 2
    dequeue_interval_seconds: 1
"""


def _product_folder(workdir: Path, bucket: str) -> Path:
    """Only the support-ticket contract, pointed at a bucket of this run."""
    folder = workdir / "products"
    folder.mkdir()
    text = shipped_contract(PRODUCT, workdir / "sample_data")
    (folder / f"{PRODUCT}.yaml").write_text(
        text.replace("bucket: northwind-landing", f"bucket: {bucket}")
    )
    grant(
        folder, "customer_support", buckets=[{"bucket": bucket, "prefixes": ["support_tickets/"]}]
    )
    return folder


def _start_dagster(workdir: Path, env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    """In its own process group: `dagster dev` ignores SIGTERM sent to it alone."""
    home = workdir / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(DAGSTER_YAML)
    root = Path(__file__).resolve().parents[2]
    # The code location of the contracts folder (MESH_RAG_CONTRACTS_DIR): this run's product.
    command = [
        str(Path(sys.executable).parent / "dagster"),
        "dev",
        "-m",
        "mesh_rag_pipelines.definitions",
        "-p",
        str(port),
    ]
    return subprocess.Popen(
        command,
        cwd=root,
        env={**env, "DAGSTER_HOME": str(home)},
        stdout=(workdir / "dagster.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _wait_for_ui(port: int, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2)
            return
        except OSError:
            time.sleep(1)
    raise RuntimeError("dagster dev did not answer")


def _event(ticket: str, marker: str) -> bytes:
    now = datetime.now(UTC).isoformat()
    data = {
        "ticket_id": ticket,
        "subject": f"Lost parcel {marker}",
        "status": "open",
        "priority": "normal",
        "product_area": "shipping",
        "customer_email": "x@example.com",
        "body": f"My parcel with tracking code {marker} has not arrived after nine days; "
        f"the {marker} tracking page shows no movement since it left the warehouse.",
    }
    event = {"op": "upsert", "id": ticket, "version": 1, "updated_at": now, "data": data}
    return (json.dumps(event) + "\n").encode()


def _queryable(engine, contract: DataProductContract, embedders, marker: str, ticket: str) -> bool:  # type: ignore[no-untyped-def]
    caller = Caller.of_product(contract)
    hits = search(
        engine, [contract], f"parcel tracking code {marker}", caller, k=3, embedders=embedders
    )
    return any(hit.doc_id == ticket for hit in hits)


def run(argv: list[str]) -> dict[str, float | None]:
    parser = argparse.ArgumentParser(prog="freshness")
    parser.add_argument("--events", type=int, default=24)
    parser.add_argument("--timeout", type=float, default=180.0, help="per event, seconds")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="mesh_rag_fresh_"))
    os.environ["MESH_RAG_HOME"] = str(workdir)
    os.environ["MESH_RAG_PROFILE"] = "local"  # the loopback S3 server
    bucket = f"fresh-{int(time.time())}"
    endpoint = s3_endpoint_url()
    s3 = s3_client(endpoint)
    ensure_bucket(s3, bucket)
    contracts_dir = _product_folder(workdir, bucket)
    contract = load_contracts(contracts_dir)[0]
    prefix = contract.source.prefix or ""
    lags: list[float] = []
    with benchmark_database() as url:
        env = {
            **os.environ,
            "MESH_RAG_DATABASE_URL": url,
            "MESH_RAG_S3_ENDPOINT_URL": endpoint,
            "MESH_RAG_CONTRACTS_DIR": str(contracts_dir),
        }
        engine = engine_for(url)
        embedder = embedder_for(contract.embedding)
        embedders = {embedder.model_id: embedder}
        port = 3400 + random.randrange(500)
        dagster = _start_dagster(workdir, env, port)
        try:
            _wait_for_ui(port)
            for number in range(args.events + 1):
                time.sleep(random.uniform(0, 10))
                ticket, marker = f"T-F{number:04d}", f"ZX{random.randrange(10**8):08d}"
                key = f"{prefix}{datetime.now(UTC):%Y-%m-%dT%H-%M-%S}-fresh-{number:04d}.jsonl"
                s3.put_object(Bucket=bucket, Key=key, Body=_event(ticket, marker))
                landed = time.monotonic()
                while not _queryable(engine, contract, embedders, marker, ticket):
                    if time.monotonic() - landed > args.timeout:
                        raise RuntimeError(
                            f"{ticket} not queryable after {args.timeout}s; "
                            f"see {workdir / 'dagster.log'}"
                        )
                    time.sleep(0.25)
                lag = time.monotonic() - landed
                print(f"event {number}: {lag:.1f}s", flush=True)
                if number > 0:  # the first event also waits for the code location and model
                    lags.append(lag)
        finally:
            os.killpg(dagster.pid, signal.SIGTERM)
            try:
                dagster.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(dagster.pid, signal.SIGKILL)
    lags.sort()
    p50 = lags[len(lags) // 2]
    p95 = lags[min(len(lags) - 1, round(0.95 * (len(lags) - 1)))]
    stop_local_s3(workdir)
    results.record_details(
        "freshness", {"events": len(lags), "lags_s": lags, "spread": results.spread(lags)}
    )
    shutil.rmtree(workdir, ignore_errors=True)
    return {"freshness_lag_p50_s": round(p50, 2), "freshness_lag_p95_s": round(p95, 2)}
