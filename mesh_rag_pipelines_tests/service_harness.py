"""`mesh-rag serve` as an operator starts it: a real process on a free loopback port, against a
test's store and contracts, ready once `/readyz` says so; stopped with its process group."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from mesh_rag_pipelines.services.local_s3 import free_port

READY_TIMEOUT_SECONDS = 300.0


class RunningService:
    def __init__(self, mesh_rag: Path, env: dict[str, str], cwd: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = Path(tempfile.mkdtemp(prefix="mesh_rag_serve_")) / "serve.log"
        with self._log.open("w") as output:  # the process keeps its own copy open
            self.process = subprocess.Popen(
                [str(mesh_rag), "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                env=env,
                cwd=cwd,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_until_ready()

    def output(self) -> str:
        """What the process wrote (stdout and stderr)."""
        return self._log.read_text(errors="replace")

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        last = "no reply"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mesh-rag serve exited early:\n{self.output()[-4000:]}")
            try:
                reply = httpx.get(f"{self.url}/readyz", timeout=5)
                if reply.status_code == 200:
                    return
                last = f"{reply.status_code} {reply.text}"
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"mesh-rag serve not ready ({last}):\n{self.output()[-4000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)
        # Shown by pytest with a failing test: what the service said while it ran.
        print(f"mesh-rag serve output:\n{self.output()[-8000:]}")
        shutil.rmtree(self._log.parent, ignore_errors=True)
