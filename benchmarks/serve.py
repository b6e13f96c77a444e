"""Retrieval as applications call it: HTTP to `mesh-rag serve`, a process of its own, with API
keys made by `mesh-rag keys create`, on a product of 100k chunks; and `mesh-rag query`, cold.

Setup: the first --limit SciFact documents in a source table, built by `mesh-rag build` (a live
index version with real MiniLM vectors). The live version's table is then made of --rows chunks
of synthetic vectors scattered around the real ones (row i readable by ACL group
`group-{i % 100}`), and its HNSW index is built again, as a release builds it. Queries are
SciFact claims, real text that the service embeds: those in which no PII pattern could match
(no digit, "@" or ":"), so that the ground truth's query vectors are the ones the service
searched with.

Measured, every request through HTTP with the query's embedding included:
- 1 client: sequential requests by a caller whose key reads every synthetic row; p50, p99.
- 16 clients, DURATION seconds each: idle, during a sync (1% of the source's rows changed, then
  `mesh-rag build` of a second product over the same table, at the lowest CPU priority, as a
  worker on another machine would leave the service its CPU; the served product's own index
  holds the synthetic rows no source has, which its sync's blocking check refuses), and during
  release swaps (the live version swapped to a second version and
  back, again and again); requests per second, p99, errors (any status but 200, any failure).
- recall@10 for callers whose keys read 1%, 10%, 50% of the rows, against the exact top 10 of
  the rows they may read; and every hit of every response checked against the caller's groups.
- `mesh-rag query` wall time, cold (a new process each time), median of QUERY_RUNS.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from sqlalchemy import Engine, select, text

from benchmarks import results, scifact_product
from benchmarks.database import benchmark_database
from benchmarks.latency import build_indexes, group_name, load, row_key
from benchmarks.release import MESH_RAG, _revised, cli_env, timed_cli
from benchmarks.scifact import CHOSEN
from benchmarks.synthetic_vectors import AroundVectors, exact_top_k
from mesh_rag_pipelines.contracts import DataProductContract, load_contract
from mesh_rag_pipelines.embedding import query_embedder_for
from mesh_rag_pipelines.governance.access import SERVING_ROLE
from mesh_rag_pipelines.releases import rollback, swap
from mesh_rag_pipelines.services.embedded_postgres import local_login
from mesh_rag_pipelines.services.local_s3 import free_port
from mesh_rag_pipelines.store.database import engine_for
from mesh_rag_pipelines.store.index_versions import index_version_id, live_versions
from mesh_rag_pipelines.store.schema import SCHEMA, hnsw_index, index_table

GROUPS = 100
SHARES = (1, 10, 50)  # percent of the synthetic rows a caller's key reads
QUERIES = 200
WARM_UP = 20
CLIENTS = 16
DURATION = int(os.environ.get("MESH_RAG_BENCH_SERVE_SECONDS", "30"))
QUERY_RUNS = 5
KEY = re.compile(r"\bmrk_\S+")


def run(argv: list[str]) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="serve")
    parser.add_argument("--limit", type=int, default=300, help="first N SciFact documents")
    parser.add_argument("--rows", type=int, default=100_000, help="chunks of the product")
    args = parser.parse_args(argv)
    docs = scifact_product.load_corpus(args.limit)
    details: dict[str, Any] = {"documents": len(docs), "rows": args.rows, "clients": CLIENTS}
    with benchmark_database() as url, tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        engine = engine_for(url)
        scifact_product.create_source_table(engine, docs)
        contract = _shared_with_every_group(folder, scifact_product.write_contract(folder, CHOSEN))
        env = {
            **cli_env(url, folder),
            "MESH_RAG_SERVING_DATABASE_URL": local_login(url, SERVING_ROLE),
        }
        details["build_seconds"] = timed_cli(env, "build", "--product", contract.name)[0]
        synced = _neighbour(env, folder, contract)
        green = _second_version(engine, env, folder, contract)
        vectors = _grow(engine, contract, args.rows)
        keys = {share: _key(env, share) for share in (*SHARES, 100)}
        queries = _claims(contract)
        query_vectors = query_embedder_for(contract.embedding).embed(queries)
        port = free_port()
        service = subprocess.Popen(
            [MESH_RAG, "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(base, service)
            details["one_client"] = _one_client(base, keys[100], contract.name, queries)
            truth = (query_vectors, vectors)
            details["acl"] = {
                share: _recall(base, keys[share], contract.name, queries, truth, share)
                for share in SHARES
            }
            load_phases = {
                "idle": lambda: time.sleep(DURATION),
                "during_sync": lambda: _sync(engine, env, synced),
                "during_swaps": lambda: _swaps(engine, contract.name, green),
            }
            details["sixteen_clients"] = {
                phase: _many_clients(base, keys[10], contract.name, queries, action)
                for phase, action in load_phases.items()
            }
        finally:
            os.killpg(service.pid, signal.SIGTERM)
            service.wait(timeout=60)
        details["cli_query_seconds"] = _cli_query(env, contract.name, queries[0])
        engine.dispose()
    results.record_details("serve", details)
    loaded = details["sixteen_clients"].values()
    errors = sum(phase["errors"] for phase in loaded) + details["one_client"]["errors"]
    errors += sum(
        share["errors"] + share["rows_outside_groups"] for share in details["acl"].values()
    )
    return {
        "serve_p50_ms_1client": round(details["one_client"]["p50_ms"], 2),
        "serve_p99_ms_1client": round(details["one_client"]["p99_ms"], 2),
        "serve_qps_16clients": round(min(phase["qps"] for phase in loaded), 1),
        "serve_p99_ms_16clients": round(max(phase["p99_ms"] for phase in loaded), 2),
        "serve_errors": errors,
        **{
            f"serve_recall10_acl_{share}pct": round(details["acl"][share]["recall10"], 4)
            for share in SHARES
        },
        "cli_query_seconds": round(statistics.median(details["cli_query_seconds"]), 3),
    }


def _grow(engine: Engine, contract: DataProductContract, rows: int) -> np.ndarray:
    """The live version's table made of `rows` chunks around its real vectors (which it then no
    longer holds), indexed again; their vectors, in row order (row i is `row_key(i)`)."""
    (version,) = live_versions(engine, [contract.name])
    table = index_table(version.table_name, version.dimensions, version.distance)
    with engine.connect() as conn:
        real = conn.execute(select(table.c.embedding)).scalars().all()
    centres = np.array([np.asarray(v, dtype=np.float32) for v in real])
    hnsw = hnsw_index(table.name, version.dimensions, version.distance, 16, 64)
    with engine.begin() as conn:
        conn.execute(text(f"DROP INDEX IF EXISTS {SCHEMA}.{hnsw.name}"))
    spec = contract.index
    hnsw = hnsw_index(
        table.name, version.dimensions, version.distance, spec.m, spec.ef_construction
    )
    with engine.begin() as conn:  # the real rows are readable by every group: centres only
        conn.execute(table.delete())
    synthetic = load(engine, table.name, AroundVectors(centres), rows, GROUPS, contract.name)
    outcome = build_indexes(engine, table, [hnsw])
    if not outcome["built"]:
        raise RuntimeError(f"index build failed: {outcome}")
    seconds = outcome["seconds_index_build"]
    print(f"{rows} chunks around {len(real)} real ones, indexed in {seconds:.0f}s")
    return synthetic


def _shared_with_every_group(folder: Path, contract: DataProductContract) -> DataProductContract:
    """The product shared with the synthetic rows' groups too: the service searches a product
    only for callers of its groups (row-level security then decides each row)."""
    path = folder / f"{contract.name}.yaml"
    groups = ", ".join(["everyone", *(group_name(g) for g in range(GROUPS))])
    path.write_text(path.read_text().replace("acl_groups: [everyone]", f"acl_groups: [{groups}]"))
    return load_contract(path)


def _neighbour(env: dict[str, str], folder: Path, contract: DataProductContract) -> str:
    """A second product over the same source table, built now: the one synced under load (the
    served product's index holds rows no source has, which its own sync would refuse)."""
    name = f"{contract.name}_neighbour"
    path = folder / f"{name}.yaml"
    path.write_text((folder / f"{contract.name}.yaml").read_text().replace(
        f"name: {contract.name}", f"name: {name}"
    ))  # fmt: skip
    timed_cli(env, "build", "--product", name)
    return name


def _second_version(
    engine: Engine, env: dict[str, str], folder: Path, contract: DataProductContract
) -> str:
    """Another model revision built beside the live version, for the swaps; the live version
    stays live."""
    green = _revised(folder, contract, "2")
    timed_cli(env, "build", "--product", green.name)
    (live,) = live_versions(engine, [contract.name])
    if live.id == index_version_id(green):
        rollback(engine, contract.name, actor="benchmark")
    return index_version_id(green)


def _key(env: dict[str, str], share: int) -> str:
    groups = [arg for g in range(share) for arg in ("--group", group_name(g))]
    done = subprocess.run(
        [MESH_RAG, "keys", "create", "--name", f"bench-{share}pct", *groups, "--expires", "1d"],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    found = KEY.search(done.stdout)
    if not found:
        raise RuntimeError(f"no key in the output of mesh-rag keys create:\n{done.stdout}")
    return found.group(0)


def _claims(contract: DataProductContract) -> list[str]:
    """SciFact test claims that no PII pattern could match: the service embeds them as given."""
    texts, _ = scifact_product.load_test_queries()
    plain = [q for q in texts.values() if not any(c.isdigit() or c in "@:" for c in q)]
    return (plain * (1 + (QUERIES + WARM_UP) // len(plain)))[: QUERIES + WARM_UP]


def _wait_ready(base: str, service: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if service.poll() is not None:
            raise RuntimeError(f"mesh-rag serve exited:\n{service.stderr.read().decode()[-3000:]}")  # type: ignore[union-attr]
        try:
            if httpx.get(f"{base}/readyz", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise RuntimeError("mesh-rag serve was not ready in 300 s")


def _search(client: httpx.Client, product: str, query: str, k: int = 10) -> httpx.Response:
    return client.post("/v1/search", json={"query": query, "products": [product], "k": k})


def _client(base: str, key: str) -> httpx.Client:
    return httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30)


def _one_client(base: str, key: str, product: str, queries: list[str]) -> dict[str, Any]:
    timings, errors, empty = [], 0, 0
    with _client(base, key) as client:
        for position, query in enumerate(queries):
            started = time.perf_counter()
            reply = _search(client, product, query)
            elapsed = (time.perf_counter() - started) * 1000
            errors += reply.status_code != 200
            empty += reply.status_code == 200 and not reply.json()["results"]
            if position >= WARM_UP:
                timings.append(elapsed)
    return {
        "requests": len(timings),
        "p50_ms": float(np.percentile(timings, 50)),
        "p99_ms": float(np.percentile(timings, 99)),
        "errors": errors,
        "empty_responses": empty,
    }


def _recall(
    base: str,
    key: str,
    product: str,
    queries: list[str],
    truth_vectors: tuple[np.ndarray, np.ndarray],
    share: int,
) -> dict[str, Any]:
    query_vectors, vectors = truth_vectors
    owners = np.arange(len(vectors)) % GROUPS
    truth = exact_top_k(vectors, query_vectors[WARM_UP:], 10, owners < share)
    readable = {group_name(g) for g in range(share)}
    recalls, outside, errors = [], 0, 0
    with _client(base, key) as client:
        for position, query in enumerate(queries[WARM_UP:]):
            reply = _search(client, product, query)
            if reply.status_code != 200:
                errors += 1
                continue
            hits = reply.json()["results"]
            outside += sum(1 for hit in hits if not _readable(hit, readable))
            expected = {row_key(r) for r in truth[position]}
            recalls.append(len(expected & {(h["doc_id"], h["chunk_no"]) for h in hits}) / 10)
    return {
        "caller_groups": share,
        "recall10": float(np.mean(recalls)),
        "rows_outside_groups": outside,
        "errors": errors,
    }


def _readable(hit: dict[str, Any], groups: set[str]) -> bool:
    """Row i (`doc-{i // 3}`, chunk `i % 3`) is group `i % 100`'s."""
    if not hit["doc_id"].startswith("doc-"):
        return False
    row = int(hit["doc_id"][4:]) * 3 + hit["chunk_no"]
    return group_name(row % GROUPS) in groups


def _many_clients(
    base: str, key: str, product: str, queries: list[str], action: Any
) -> dict[str, Any]:
    """CLIENTS threads, each with its own connection, request after request while `action`
    runs (and for at least DURATION seconds)."""
    timings: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop = threading.Event()

    def client_loop(offset: int) -> None:
        with _client(base, key) as client:
            position = offset
            while not stop.is_set():
                query = queries[position % len(queries)]
                position += 1
                started = time.perf_counter()
                try:
                    ok = _search(client, product, query).status_code == 200
                except httpx.HTTPError:
                    ok = False
                elapsed = (time.perf_counter() - started) * 1000
                with lock:
                    timings.append(elapsed)
                    errors[0] += not ok

    threads = [threading.Thread(target=client_loop, args=(n * 7,)) for n in range(CLIENTS)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    began = time.perf_counter()
    action()
    remaining = DURATION - (time.perf_counter() - began)
    if remaining > 0:
        time.sleep(remaining)
    stop.set()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    outcome = {
        "seconds": seconds,
        "requests": len(timings),
        "qps": len(timings) / seconds,
        "p50_ms": float(np.percentile(timings, 50)),
        "p99_ms": float(np.percentile(timings, 99)),
        "errors": errors[0],
    }
    print(f"16 clients: {outcome}", flush=True)
    return outcome


def _sync(engine: Engine, env: dict[str, str], product: str) -> None:
    """1% of the source's rows changed, then synced by `mesh-rag build` at the lowest priority."""
    with engine.begin() as conn:
        conn.execute(
            text(
                f"UPDATE {scifact_product.SOURCE_TABLE} SET text = text || ' (revised)', "
                "revision = revision + 1, updated_at = now() "
                "WHERE doc_id IN (SELECT doc_id FROM "
                f"{scifact_product.SOURCE_TABLE} ORDER BY doc_id LIMIT "
                f"(SELECT greatest(1, count(*) / 100) FROM {scifact_product.SOURCE_TABLE}))"
            )
        )
    timed_cli(env, "build", "--product", product, nice=True)


def _swaps(engine: Engine, product: str, green: str) -> None:
    """Swap to the second version and back, for DURATION seconds."""
    deadline = time.monotonic() + DURATION
    while time.monotonic() < deadline:
        swap(engine, product, green, actor="benchmark")
        time.sleep(0.5)
        rollback(engine, product, actor="benchmark")
        time.sleep(0.5)


def _cli_query(env: dict[str, str], product: str, query: str) -> list[float]:
    """`mesh-rag query` as typed, each a new process (the first one warms the disk cache)."""
    command = [MESH_RAG, "query", query, "--group", group_name(0), "--product", product, "-k", "5"]
    seconds = []
    for number in range(QUERY_RUNS + 1):
        started = time.perf_counter()
        subprocess.run(command, env=env, capture_output=True, check=True)
        if number:
            seconds.append(time.perf_counter() - started)
    print(f"mesh-rag query: {seconds}", flush=True)
    return seconds
