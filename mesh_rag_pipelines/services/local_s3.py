"""A local S3-compatible endpoint (moto's server) on loopback, used when none is configured.

Started detached so that Dagster's processes share it; its address is kept in the home folder.
It holds objects in memory: `mesh-rag demo` uploads the sample landing files after a restart.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except Exception:  # noqa: BLE001 - any failure means "not our server"
        return False


def ensure_local_s3(home: Path) -> str:
    """Endpoint URL of the running local S3 server, starting one if needed."""
    state = home / "s3.json"
    if state.exists():
        url = json.loads(state.read_text())["endpoint_url"]
        if _answers(url):
            return url
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    executable = shutil.which("moto_server") or str(Path(sys.executable).parent / "moto_server")
    log = (home / "s3.log").open("ab")
    process = subprocess.Popen(
        [executable, "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while not _answers(url):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"local S3 server did not start; see {home / 's3.log'}")
        time.sleep(0.2)
    state.write_text(json.dumps({"endpoint_url": url, "pid": process.pid}))
    return url


def stop_local_s3(home: Path) -> bool:
    import os
    import signal

    state = home / "s3.json"
    if not state.exists():
        return False
    pid = json.loads(state.read_text())["pid"]
    state.unlink()
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    return True
