"""``create_app(settings) -> FastAPI``: the whole service, importable and startable in tests.

The state (dataset, store, model) is built when the app is created, so an app is ready as
soon as it exists; the store is closed on shutdown.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from frugalrec.data.dataset import Dataset
from frugalrec.serve.admission import Admission, AdmissionControl, shedding_protocol
from frugalrec.serve.errors import install_error_handlers
from frugalrec.serve.metrics import ServiceMetrics
from frugalrec.serve.routers import admin, events, items, ops, query, users
from frugalrec.serve.security import ApiKeys, BodySizeLimit, ClientKeys, RateLimiter, RateLimits
from frugalrec.serve.settings import ServeSettings
from frugalrec.serve.state import ServiceState

STATIC = resources.files("frugalrec.serve") / "static"


class RequestMetrics:
    """ASGI middleware: latency per route template (never the raw path, which holds user
    ids), method, tier and status. No access log is written: paths carry user ids."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or "unmatched"
            tier = (scope.get("state") or {}).get("tier", "none")
            self.metrics.observe(endpoint, scope["method"], tier, status, time.perf_counter() - t0)


def create_app(settings: ServeSettings, dataset: Dataset | None = None, llm: Any = None) -> FastAPI:
    """The service for ``settings`` (``dataset`` overrides ``settings.dataset`` and ``llm``
    the packaged LLM of ``rerank="llm"``, for tests)."""
    service = ServiceState(settings, dataset, llm)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        service.close()

    app = FastAPI(
        title="frugalrec",
        version="1",
        summary="Recommendations that know what they cost",
        description=(
            "Versioned API (/v1). Write and admin endpoints need `Authorization: Bearer "
            "<key>`; user ids are pseudonymised before anything is stored or logged. "
            "Every error is a JSON body naming the field at fault. Under overload a request "
            "is refused at once with 503 and Retry-After (load shedding); a rate limit "
            "answers 429 with Retry-After. Events carry an optional event_id that makes a "
            "retry safe."
        ),
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.api_keys = ApiKeys(settings.api_key_hashes)
    app.state.rate_limiter = RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst)
    app.state.anonymous_limiter = RateLimiter(
        settings.anonymous_rate_limit_per_s, settings.anonymous_rate_limit_burst, who="client"
    )
    app.state.client_keys = ClientKeys()
    install_error_handlers(app)
    for r in (users.router, items.router, query.router, events.router, admin.router, ops.router):
        app.include_router(r)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(str(STATIC / "index.html"), media_type="text/html")

    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    # Outermost first: metrics, shedding (the cheapest refusal), rate limits and key check,
    # body size, then CORS and the app.
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(
        RateLimits,
        api_keys=app.state.api_keys,
        keys=app.state.rate_limiter,
        anonymous=app.state.anonymous_limiter,
        client_keys=app.state.client_keys,
        metrics=service.metrics,
    )
    app.state.admission = Admission(
        service.metrics,
        settings.max_in_flight,
        settings.max_in_flight_writes,
        settings.max_loop_lag_ms,
    )
    app.add_middleware(AdmissionControl, admission=app.state.admission)
    app.add_middleware(RequestMetrics, metrics=service.metrics)
    return app


def http_protocol(app: FastAPI) -> type:
    """The uvicorn HTTP protocol class to serve ``app`` with (``uvicorn.run(..., http=)``):
    refusals decided when a request's headers are parsed, before any ASGI work."""
    return shedding_protocol(app.state.admission, app.state.service.metrics)
