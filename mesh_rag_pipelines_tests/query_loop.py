"""A reader that queries a product over and over until told to stop, recording each result set:
run as a separate process beside a release, as a serving application would.

Usage: python -m mesh_rag_pipelines_tests.query_loop DATABASE_URL CONTRACTS_DIR PRODUCT OUT STOP
[PAUSE_SECONDS]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from mesh_rag_pipelines.contracts import load_contracts
from mesh_rag_pipelines.retrieval import Caller, search
from mesh_rag_pipelines.store.database import engine_for

QUERIES = (
    "How many weeks of paid leave does a primary caregiver get?",
    "hotel cap in New York",
    "return the company laptop after leaving",
)


def main(
    database_url: str, contracts_dir: str, product: str, out: str, stop: str, pause: float = 0.0
) -> None:
    import torch

    torch.set_num_threads(1)  # one short query at a time: a second thread only waits
    engine = engine_for(database_url)
    contracts = [c for c in load_contracts(Path(contracts_dir)) if c.name == product]
    with open(out, "a") as log:
        number = 0
        while not Path(stop).exists():
            query = QUERIES[number % len(QUERIES)]
            started = time.time()
            try:
                hits = search(engine, contracts, query, Caller.of_product(contracts[0]), k=5)
                record = {
                    "at": started,
                    "seconds": time.time() - started,
                    "versions": sorted({h.index_version for h in hits}),
                    "products": sorted({h.product for h in hits}),
                    "error": None,
                }
            except Exception as exc:  # noqa: BLE001 - every failure is the finding
                record = {"at": started, "error": f"{type(exc).__name__}: {exc}"}
            log.write(json.dumps(record) + "\n")
            log.flush()
            number += 1
            time.sleep(pause)


if __name__ == "__main__":
    main(*sys.argv[1:6], *[float(arg) for arg in sys.argv[6:7]])
