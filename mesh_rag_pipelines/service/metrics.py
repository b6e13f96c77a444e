"""Prometheus metrics of one app, in a registry of its own (two apps in one process never share
counters): requests by route, status and product, latency, abstentions and errors.

Counting happens in an ASGI middleware around every request; a handler names the products a
request searched in the request's state (`products`), and why it abstained (`abstention`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

NO_PRODUCT = ""
LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.04, 0.08, 0.15, 0.3, 0.6, 1.2, 2.5, 5.0, 10.0)


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "mesh_rag_requests",
            "Requests answered, by route, HTTP status and product searched.",
            ["route", "status", "product"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "mesh_rag_request_seconds",
            "Time to answer a request, by route and product searched.",
            ["route", "product"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.abstentions = Counter(
            "mesh_rag_abstentions",
            "Search and answer requests that returned nothing, by route and product.",
            ["route", "product"],
            registry=self.registry,
        )
        self.errors = Counter(
            "mesh_rag_errors",
            "Requests that failed in the service (HTTP 5xx), by route.",
            ["route"],
            registry=self.registry,
        )

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def observe(
        self, route: str, status: int, seconds: float, products: list[str], abstained: bool
    ) -> None:
        for product in products or [NO_PRODUCT]:
            self.requests.labels(route, str(status), product).inc()
            self.latency.labels(route, product).observe(seconds)
            if abstained:
                self.abstentions.labels(route, product).inc()
        if status >= 500:
            self.errors.labels(route).inc()


class MetricsMiddleware:
    """Counts every request once it is answered (or has failed)."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            state = scope.get("state") or {}
            self.metrics.observe(
                path,
                status,
                time.perf_counter() - started,
                list(state.get("products") or []),
                bool(state.get("abstention")),
            )
