"""Stopping `mesh-rag ui` the way a service manager or a closed terminal does (SIGTERM to its
own pid) stops everything it started, and frees its port. Runs last: it ends the session's UI."""

from __future__ import annotations

import psutil

from mesh_rag_pipelines_tests.acceptance.harness import Acceptance, listening, wait_for

GRACE_SECONDS = 30


def describe(process: psutil.Process) -> str:
    try:
        return f"{process.pid} {' '.join(process.cmdline())[:200]}"
    except psutil.Error:
        return f"{process.pid} (exited)"


def test_sigterm_to_mesh_rag_ui_stops_every_process_it_started(acceptance: Acceptance) -> None:
    ui = acceptance.ui
    assert ui is not None and ui.process.poll() is None
    assert len(ui.process_tree()) > 1, "mesh-rag ui started no process"
    survivors = ui.terminate(grace=GRACE_SECONDS)
    assert [describe(process) for process in survivors] == []
    wait_for(lambda: not listening(ui.port), 5, f"port {ui.port} to stop answering")
