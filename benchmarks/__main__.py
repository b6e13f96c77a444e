"""`python -m benchmarks <name> [options]`; `all` runs every benchmark.

Figures are printed and merged into benchmarks/results.json; the
details behind them go to <name>.details.json beside it, for RESULTS.md.
"""

from __future__ import annotations

import importlib
import json
import sys

from benchmarks import results

BENCHMARKS = (
    "scifact",
    "overhead",
    "cli_build",
    "incremental",
    "latency",
    "delete_detection",
    "freshness_daemon",
    "release",
    "rls",
    "serve",
)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in (*BENCHMARKS, "all"):
        print(f"usage: python -m benchmarks {{{','.join(BENCHMARKS)},all}}")
        return 2
    names = BENCHMARKS if argv[0] == "all" else (argv[0],)
    for name in names:
        module = importlib.import_module(f"benchmarks.{name}")
        figures = module.run(argv[1:] if argv[0] != "all" else [])
        results.record(figures)
        print(f"{name}: {json.dumps(figures)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
