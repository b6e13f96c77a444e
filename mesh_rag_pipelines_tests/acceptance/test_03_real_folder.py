"""A folder of real files (this machine's package documentation, several named alike but for
their extension) read with the recursive pattern `**/*`: every file is a document of its own, no
folder is taken for a record, and once the daemon has polled it nothing waits and a build
changes nothing."""

from __future__ import annotations

import time

from mesh_rag_pipelines_tests.acceptance.harness import REAL_DOCS_PRODUCT, Acceptance, wait_for

SENSOR = f"{REAL_DOCS_PRODUCT}_source_sensor"


def real_files(acceptance: Acceptance) -> list[str]:
    folder = acceptance.products / "people" / REAL_DOCS_PRODUCT / "documents"
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_every_file_is_a_document_and_no_folder_is_quarantined(acceptance: Acceptance) -> None:
    files = real_files(acceptance)
    stems = {name.split(".", 1)[0] for name in files}
    assert len(stems) < len(files), "no two files are named alike but for their extension"
    built = acceptance.cli_ok("build", "--product", REAL_DOCS_PRODUCT).stdout
    assert f"{REAL_DOCS_PRODUCT}: index matches its source: {len(files)} documents" in built, built
    assert f"{REAL_DOCS_PRODUCT}: 0 documents changed, 0 deleted; 0 texts embedded" in built
    listed = acceptance.cli_ok("quarantine", "list", "--product", REAL_DOCS_PRODUCT).stdout
    assert listed.splitlines()[-1] == "0 quarantined records", listed


def test_nothing_waits_once_the_daemon_has_polled_the_folder(acceptance: Acceptance) -> None:
    since = time.time()
    wait_for(
        lambda: any(
            tick["status"] in ("SUCCESS", "SKIPPED") and tick["timestamp"] > since
            for tick in acceptance.sensor_ticks("people", SENSOR)
        ),
        180,
        f"a tick of {SENSOR}",
        interval=5,
    )
    row = acceptance.products_json()[REAL_DOCS_PRODUCT]
    assert (row["in_sync"], row["waiting_changes"], row["unindexed_documents"]) == (True, 0, 0)
