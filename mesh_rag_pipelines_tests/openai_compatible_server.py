"""An OpenAI-compatible endpoint on loopback, for tests: embeddings and chat completions.

OpenAI itself cannot be reached from here, so this server stands in for it over real HTTP:
POST /v1/embeddings answers with deterministic vectors (seeded by the text) and returns the items
out of order (clients must use `index`); POST /v1/chat/completions answers with `chat_reply`.
It can be told to misbehave, as real providers do: a queue of faults for the next requests
(`faults`), or a seeded random share of all requests (`fault_rate`). Every request is recorded.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

# What a faulty provider does; each is one request's reply.
FAULTS = (
    "rate_limited",  # 429 with a short retry-after
    "server_error",  # 500
    "hang",  # answers only after `hang_seconds`, past the client's timeout
    "short_reply",  # one embedding fewer than inputs
    "wrong_dimensions",  # vectors of dimensions + 1
    "nan",  # a NaN in one vector
    "zero_vector",  # an all-zero vector
    "duplicate_index",  # two items with the same index, one index missing
)


def fake_vector(text: str, dimensions: int) -> list[float]:
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
    return np.random.default_rng(seed).standard_normal(dimensions).astype(np.float32).tolist()


def expected_vector(text: str, dimensions: int) -> np.ndarray:
    """The unit vector a correct client stores for `text`."""
    vector = np.array(fake_vector(text, dimensions), dtype=np.float32)
    return vector / np.linalg.norm(vector)


@dataclass
class OpenAICompatibleServer:
    requests: list[dict] = field(default_factory=list)
    faults: list[str] = field(default_factory=list)
    fault_rate: float = 0.0
    seed: int = 0
    hang_seconds: float = 3.0
    delay_seconds: float = 0.0
    default_dimensions: int = 1536
    base_url: str = ""
    faults_served: list[str] = field(default_factory=list)
    # How texts become vectors (texts, dimensions -> vectors); default: noise seeded by text.
    model: Callable[[list[str], int], list[list[float]]] | None = None
    chat_reply: str = "The passage says so [1]."
    chat_requests: list[dict] = field(default_factory=list)

    def _next_fault(self, rng: random.Random) -> str | None:
        if self.faults:
            return self.faults.pop(0)
        if self.fault_rate and rng.random() < self.fault_rate:
            return rng.choice(FAULTS)
        return None

    def start(self) -> str:
        owner = self
        rng = random.Random(self.seed)
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with lock:
                    owner.requests.append(body)
                    fault = owner._next_fault(rng)
                    if fault:
                        owner.faults_served.append(fault)
                if owner.delay_seconds:
                    time.sleep(owner.delay_seconds)
                if fault == "rate_limited":
                    error = {"error": {"message": "rate limited", "type": "rate_limit"}}
                    self._reply(429, error, {"retry-after-ms": "10"})
                    return
                if fault == "server_error":
                    self._reply(500, {"error": {"message": "internal error", "type": "server"}})
                    return
                if fault == "hang":
                    time.sleep(owner.hang_seconds)
                if self.path == "/v1/chat/completions":
                    owner.chat_requests.append(body)
                    self._reply(200, owner._chat(body))
                    return
                if self.path != "/v1/embeddings":
                    self._reply(404, {"error": {"message": f"no route {self.path}"}})
                    return
                self._reply(200, owner._embeddings(body, fault))

            def _reply(self, status: int, payload: dict, headers: dict | None = None) -> None:
                raw = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(raw)))
                    for name, value in (headers or {}).items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(raw)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting (a hang it timed out on)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        return self.base_url

    def _embeddings(self, body: dict, fault: str | None) -> dict:
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        dims = body.get("dimensions", self.default_dimensions)
        if fault == "wrong_dimensions":
            dims += 1
        vectors = self.model(inputs, dims) if self.model else [fake_vector(t, dims) for t in inputs]
        data = [
            {"object": "embedding", "index": i, "embedding": vector}
            for i, vector in enumerate(vectors)
        ]
        if fault == "short_reply":
            data.pop()
        elif fault == "nan":
            data[0]["embedding"][0] = float("nan")
        elif fault == "zero_vector":
            data[-1]["embedding"] = [0.0] * dims
        elif fault == "duplicate_index" and len(data) > 1:
            data[-1]["index"] = 0
        data.reverse()
        return {
            "object": "list",
            "data": data,
            "model": body["model"],
            "usage": {"prompt_tokens": 0, "total_tokens": 0},
        }

    def _chat(self, body: dict) -> dict:
        return {
            "id": f"chat-{len(self.chat_requests)}",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": self.chat_reply},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        }

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
