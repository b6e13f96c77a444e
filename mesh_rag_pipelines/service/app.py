"""The retrieval service as an ASGI app: `create_app(settings)`.

At startup it connects as the serving role, loads the contracts and the query models once, and
keeps them for its life; every `/v1` request needs a verified bearer token (service.identity),
whose groups alone decide what the store returns. Health (`/healthz`: the process answers),
readiness (`/readyz`: the store answers and the models are loaded) and Prometheus metrics
(`/metrics`) need none.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import Engine

from mesh_rag_pipelines.service import v1
from mesh_rag_pipelines.service.identity import Unauthenticated
from mesh_rag_pipelines.service.metrics import MetricsMiddleware, ServiceMetrics
from mesh_rag_pipelines.service.state import ServiceState, load_state
from mesh_rag_pipelines.settings import Settings

API_VERSION = "1"


def create_app(settings: Settings, serving: Callable[[Settings], Engine] | None = None) -> FastAPI:
    """The service's app; `serving` makes the serving role's engine (connections.serving_engine
    unless given)."""
    metrics = ServiceMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from threadpoolctl import threadpool_limits

        from mesh_rag_pipelines.connections import serving_engine

        # Requests run in threads, each embedding its own query: BLAS threads of their own would
        # oversubscribe the cores (one query measured 48 ms with two BLAS threads, 29 with one).
        threadpool_limits(1)
        engine = (serving or serving_engine)(settings)
        state = load_state(settings, engine, metrics)
        state.load_models()
        app.state.service = state
        yield
        engine.dispose()

    app = FastAPI(
        title="mesh-rag retrieval service",
        version=API_VERSION,
        description="Search and grounded answers over the data products a caller may read.",
        lifespan=lifespan,
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.include_router(v1.router)

    @app.exception_handler(Unauthenticated)
    async def unauthenticated(request: Request, exc: Unauthenticated) -> JSONResponse:
        return JSONResponse(
            {"detail": str(exc)},
            status_code=401,
            headers={"WWW-Authenticate": 'Bearer realm="mesh-rag"'},
        )

    @app.get("/healthz", tags=["operations"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"])
    def readyz(request: Request) -> JSONResponse:
        state: ServiceState | None = getattr(request.app.state, "service", None)
        why = "starting" if state is None else state.ready()
        if why:
            return JSONResponse({"status": "not ready", "detail": why}, status_code=503)
        return JSONResponse({"status": "ready", "products": state.names if state else []})

    @app.get("/metrics", tags=["operations"])
    def prometheus() -> Response:
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    return app
