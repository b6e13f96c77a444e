"""Warm run workers (runs/worker.py), kept ready by the long-lived process of a one-machine
deployment (`mesh-rag ui`) and handed runs over a Unix socket in the Dagster instance's folder.

The launcher in the daemon sends one line, a run's serialized `ExecuteRunArgs`; the pool gives
it to its oldest worker (one still warming up is still sooner than a cold start), answers that
worker's pid, and starts a replacement once the run is over, so that warming never competes
with a run for the CPU. Workers belong to the pool's process: stopping it stops them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import socketserver
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Mapping
from pathlib import Path

SOCKET_NAME = "run_workers.sock"


def socket_path(dagster_home: Path) -> Path:
    return dagster_home / SOCKET_NAME


def start_worker(env: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
    """A worker warming up; it inherits this process's environment unless given one."""
    return subprocess.Popen(
        [sys.executable, "-m", "mesh_rag_pipelines.runs.worker"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=dict(env) if env is not None else None,
    )


def hand_over(worker: subprocess.Popen[str], serialized_args: str) -> int:
    """Give `worker` its run; returns its pid."""
    assert worker.stdin is not None
    worker.stdin.write(serialized_args.strip() + "\n")
    worker.stdin.close()
    return worker.pid


class WarmWorkers:
    """`size` workers kept warm, started with the deployment's environment `env`."""

    def __init__(self, size: int, env: Mapping[str, str]):
        self.size, self.env = size, env
        self._idle: deque[subprocess.Popen[str]] = deque()
        self._busy: list[subprocess.Popen[str]] = []
        self._lock = threading.Lock()

    def fill(self) -> None:
        with self._lock:
            while len(self._idle) < self.size:
                self._idle.append(start_worker(self.env))

    def run(self, serialized_args: str) -> int:
        """Start a run in the oldest live worker (a new one if none is left); its pid."""
        with self._lock:
            worker = None
            while self._idle and worker is None:
                candidate = self._idle.popleft()
                worker = candidate if candidate.poll() is None else None
            worker = worker or start_worker(self.env)
            self._busy = [w for w in self._busy if w.poll() is None] + [worker]
        threading.Thread(target=self._refill_after, args=(worker,), daemon=True).start()
        return hand_over(worker, serialized_args)

    def _refill_after(self, worker: subprocess.Popen[str]) -> None:
        worker.wait()
        self.fill()

    def stop(self) -> None:
        """Idle workers read end-of-file and exit; busy ones are told to stop their run."""
        with self._lock:
            for worker in self._idle:
                if worker.stdin:
                    worker.stdin.close()
            for worker in self._busy:
                if worker.poll() is None:
                    worker.send_signal(signal.SIGTERM)
            self._idle.clear()


class PoolServer:
    """Serves `pool` on the socket of the instance in `dagster_home`, from a thread."""

    def __init__(self, pool: WarmWorkers, dagster_home: Path):
        self.pool, self.path = pool, socket_path(dagster_home)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        outer = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                line = self.rfile.readline().decode()
                self.wfile.write(f"{outer.pool.run(line)}\n".encode())

        self._server = socketserver.ThreadingUnixStreamServer(str(self.path), Handler)
        os.chmod(self.path, 0o600)

    def start(self) -> None:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        threading.Thread(target=self.pool.fill, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self.pool.stop()


def request_run(dagster_home: Path, serialized_args: str, timeout: float = 10.0) -> int | None:
    """Ask the pool of this instance to start a run: the worker's pid, or None if no pool
    serves this instance."""
    path = socket_path(dagster_home)
    if not path.exists():
        return None
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(timeout)
            client.connect(str(path))
            client.sendall(serialized_args.strip().encode() + b"\n")
            reply = client.makefile().readline()
    except OSError:
        return None
    return int(reply) if reply.strip().isdigit() else None
