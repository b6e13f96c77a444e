"""results.json: one flat mapping of figures; a benchmark updates only the keys it measured."""

from __future__ import annotations

import json
import platform
import statistics
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent
RESULTS_JSON = RESULTS_DIR / "results.json"

KEYS = (
    "scifact_ndcg10",
    "scifact_recall100",
    "scifact_ndcg10_exact_pg",
    "overhead_ratio",
    "writer_vs_copy",
    "incremental_time_fraction",
    "incremental_texts_embedded",
    "incremental_changed_chunk_texts",
    "noop_texts_embedded",
    "p50_ms_100k",
    "p99_ms_100k",
    "recall10_100k",
    "p99_ms_100k_acl",
    "recall10_100k_acl",
    "p50_ms_1m",
    "p99_ms_1m",
    "recall10_1m",
    "release_backfill_floor_ratio",
    "release_chunker_texts_embedded",
    "release_chunker_new_texts",
    "release_swap_ms",
    "release_query_p99_ratio",
    "release_failed_queries",
    "rls_recall10_1pct",
    "rls_recall10_10pct",
    "rls_recall10_50pct",
    "rls_p99_ms_1pct",
    "rls_p99_ms_10pct",
    "rls_p99_ms_50pct",
    "cli_build_floor_ratio",
    "cli_noop_run_seconds_median",
    "freshness_daemon_p50_s_landing",
    "freshness_daemon_p95_s_landing",
    "freshness_daemon_p50_s_table",
    "freshness_daemon_p95_s_table",
    "freshness_daemon_p50_s_files",
    "freshness_daemon_p95_s_files",
    "serve_p50_ms_1client",
    "serve_p99_ms_1client",
    "serve_qps_16clients",
    "serve_p99_ms_16clients",
    "serve_errors",
    "serve_recall10_acl_1pct",
    "serve_recall10_acl_10pct",
    "serve_recall10_acl_50pct",
    "cli_query_seconds",
    "measured_at",
)


def record(figures: dict[str, Any]) -> dict[str, Any]:
    """Merge `figures` into results.json (known keys only) and return the whole mapping."""
    unknown = sorted(set(figures) - set(KEYS))
    if unknown:
        raise KeyError(f"not results.json keys: {unknown}; known: {list(KEYS)}")
    current = json.loads(RESULTS_JSON.read_text()) if RESULTS_JSON.exists() else {}
    merged = {key: current.get(key) for key in KEYS}
    merged.update(figures)
    merged["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    RESULTS_JSON.write_text(json.dumps(merged, indent=2) + "\n")
    return merged


def record_details(benchmark: str, details: dict[str, Any]) -> None:
    """Everything a benchmark measured beyond the headline keys, for RESULTS.md; merged by
    top-level key, so that `latency --rows 1000000` keeps the 100k figures."""
    path = RESULTS_DIR / f"{benchmark}.details.json"
    payload = json.loads(path.read_text()) if path.exists() else {}
    payload.update(details)
    payload.update(machine=machine(), measured_at=datetime.now(UTC).isoformat())
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")


def spread(values: list[float]) -> dict[str, float]:
    """Median and min-max: the machine is shared, so one number alone says little."""
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def machine() -> dict[str, Any]:
    import os

    import numpy
    import sentence_transformers
    import sqlalchemy
    import torch

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "sentence_transformers": sentence_transformers.__version__,
        "numpy": numpy.__version__,
        "sqlalchemy": sqlalchemy.__version__,
        "load_average": os.getloadavg(),
    }
