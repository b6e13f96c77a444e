"""`mesh-rag ui`: the Dagster webserver and daemon, each its own process (started by `dagster
dev`), with one code location per domain of the contracts folder in use, and warm run workers
(runs/pool.py) from which the daemon's runs start.

The whole tree lives in a process group of its own and is stopped as a whole, on Ctrl+C and on
SIGTERM or SIGHUP alike: `dagster dev` shuts its services down on an interrupt (it ignores
SIGTERM), and whatever is left of the group (code servers, runs) is terminated after it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

import yaml

from mesh_rag_pipelines.cli.build import dagster_home
from mesh_rag_pipelines.cli.session import Session
from mesh_rag_pipelines.contracts.loader import domains
from mesh_rag_pipelines.runs.pool import PoolServer, WarmWorkers
from mesh_rag_pipelines.settings import DAGSTER_HOME, Settings

# `dagster dev` warns that `dg dev` supersedes it; `dg dev` serves one project as one location,
# not a workspace of one location per domain.
_QUIET_WARNINGS = "ignore:Function `dev_command` is superseded"
STOP_SECONDS = 30
# Runs kept warm: as many as the instance runs at once (dagster.yaml, max_concurrent_runs).
WARM_WORKERS = 2


def write_workspace(dagster_home: Path, settings: Settings) -> Path:
    """A workspace with one code location per domain of the contracts folder (broken domains
    included: their location shows the problem)."""
    entries = [
        {
            "python_module": {
                "module_name": "mesh_rag_pipelines.locations",
                "attribute": name,
                "location_name": name,
            }
        }
        for name in domains(settings.contracts_dir, settings)
    ]
    path = dagster_home / "workspace.yaml"
    path.write_text(yaml.safe_dump({"load_from": entries}, sort_keys=False))
    return path


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def _stop_group(group: int) -> None:
    """Terminate what is left of the process group, then kill what outlives the grace time."""
    for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        if not _group_alive(group):
            return
        os.killpg(group, sig)
        deadline = time.monotonic() + grace
        while _group_alive(group) and time.monotonic() < deadline:
            time.sleep(0.2)


def ui(session: Session, port: int) -> None:
    settings = session.settings
    home = dagster_home(settings)
    workspace = write_workspace(home, settings)
    runtime = settings.home / "run"
    runtime.mkdir(mode=0o700, exist_ok=True)
    env = {
        "XDG_RUNTIME_DIR": str(runtime),
        **settings.environ,
        DAGSTER_HOME: str(home),
        "PYTHONWARNINGS": _QUIET_WARNINGS,
    }
    dagster = Path(sys.executable).parent / "dagster"
    command = [str(dagster), "dev", "-w", str(workspace), "-p", str(port)]
    print(f"Dagster UI on http://127.0.0.1:{port} (instance {home})", flush=True)
    # Handled here, and so at their default in `dagster dev`, even where this command was
    # started with SIGINT ignored (as a shell starts background jobs).
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    pool = PoolServer(WarmWorkers(WARM_WORKERS, env), home)
    pool.start()
    process = subprocess.Popen(command, cwd=home, env=env, start_new_session=True)
    try:
        process.wait()
    except KeyboardInterrupt:
        process.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=STOP_SECONDS)
    finally:
        _stop_group(process.pid)
        pool.stop()
