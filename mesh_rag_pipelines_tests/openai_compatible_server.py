"""An OpenAI-compatible embeddings endpoint on loopback, for tests.

OpenAI itself cannot be reached from here, so this server stands in for it over real HTTP:
POST /v1/embeddings answers with deterministic vectors (seeded by the text), returns the items
out of order (clients must use `index`), and can be told to fail the next N requests with 429
to exercise the client's retries. Every request is recorded.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np


def fake_vector(text: str, dimensions: int) -> list[float]:
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
    return np.random.default_rng(seed).standard_normal(dimensions).astype(np.float32).tolist()


@dataclass
class EmbeddingsServer:
    requests: list[dict] = field(default_factory=list)
    fail_next: int = 0
    default_dimensions: int = 1536
    base_url: str = ""

    def start(self) -> str:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                owner.requests.append(body)
                if owner.fail_next > 0:
                    owner.fail_next -= 1
                    self._reply(
                        429,
                        {"error": {"message": "rate limited", "type": "rate_limit"}},
                        {"retry-after-ms": "10"},
                    )
                    return
                if self.path != "/v1/embeddings":
                    self._reply(404, {"error": {"message": f"no route {self.path}"}})
                    return
                inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
                dims = body.get("dimensions", owner.default_dimensions)
                data = [
                    {"object": "embedding", "index": i, "embedding": fake_vector(t, dims)}
                    for i, t in enumerate(inputs)
                ]
                data.reverse()
                self._reply(
                    200,
                    {
                        "object": "list",
                        "data": data,
                        "model": body["model"],
                        "usage": {"prompt_tokens": 0, "total_tokens": 0},
                    },
                )

            def _reply(self, status: int, payload: dict, headers: dict | None = None) -> None:
                raw = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(raw)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        return self.base_url

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
