"""The HTTP API (FastAPI): routers, problem+json errors, lifespan of the services."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi_offline import FastAPIOffline

from api.http import deps, middleware, problems
from api.http.auth import AuthFailed
from api.http.batch_docs import document_batch_commands
from api.http.hot_path import HotProfileReads
from api.http.links import document_links
from api.http.preconditions import PreconditionFailed
from api.http.rate_limit import KeyRateLimiter, RateLimited
from api.http.routes import (
    analytics,
    audit,
    campaigns,
    care,
    duplicates,
    ops,
    policies,
    reads,
    recommendations,
    segments,
    value,
    writes,
)
from api.http.startup import Startup
from bootstrap import Services
from bootstrap.api_background import api_background
from infra.settings import get_settings


def create_app(services: Services | None = None) -> FastAPI:
    """Build the ASGI app; ``services`` default to the configured ones (migrated on start)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            if services is None:  # a database away at start is waited for (api.http.startup)
                with Startup(app.state.stop_server).running() as app.state.startup:
                    yield
                return
            with services as svc, api_background(svc):
                app.state.services = svc
                yield
        finally:  # the async read pool (deps.async_reads), if a read opened it
            if (reads := getattr(app.state, "async_reads", None)) is not None:
                app.state.async_reads = None
                await reads.close()

    app = FastAPIOffline(  # /docs and /redoc from the package's own files: no CDN, work offline
        title="clientele",
        version="0.1.0",
        summary="Event-sourced customer records",
        lifespan=lifespan,
        swagger_ui_parameters={"validatorUrl": None},  # no badge fetched from swagger.io
    )
    default_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        """The generated document, with one schema per batch command type and the links
        between operations (once)."""
        if app.openapi_schema is None:
            app.openapi_schema = document_links(document_batch_commands(default_openapi()))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.state.stop_server = lambda: None  # `serve` sets it: what a fatal start-up error calls
    problems.install(app)
    app.add_middleware(HotProfileReads)  # inside the edge middleware, added next
    middleware.install(
        app, max_body_bytes=(services.settings if services else get_settings()).max_body_bytes
    )
    app.state.rate_limiter = KeyRateLimiter(
        (services.settings if services else get_settings()).rate_limit
    )

    @app.exception_handler(PreconditionFailed)
    async def on_precondition(_: Request, error: PreconditionFailed) -> Response:
        return problems.domain_problem(error.error, status=error.status)

    @app.exception_handler(AuthFailed)
    async def on_auth_failed(_: Request, error: AuthFailed) -> Response:
        response = problems.problem(error.status, error.code, error.detail)
        if error.status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="clientele"'
        return response

    @app.exception_handler(RateLimited)
    async def on_rate_limited(_: Request, error: RateLimited) -> Response:
        response = problems.problem(
            429, "rate-limited", str(error), limit=error.limit, retry_after=error.retry_after
        )
        response.headers["Retry-After"] = str(error.retry_after)
        return response

    @app.exception_handler(deps.CustomerParked)
    async def on_customer_parked(_: Request, error: deps.CustomerParked) -> Response:
        response = problems.problem(
            503,
            "customer-parked",
            str(error),
            customer_id=error.customer_id,
            held_by=error.stage,
            version=error.parked.version,
            position=error.parked.position,
        )
        response.headers["Retry-After"] = "5"
        return response

    @app.exception_handler(deps.NotCaughtUp)
    async def on_not_caught_up(_: Request, error: deps.NotCaughtUp) -> Response:
        response = problems.problem(503, "not-caught-up", str(error), position=error.reached)
        response.headers["Retry-After"] = "1"
        return response

    for router in (
        writes.router,
        reads.router,
        segments.router,
        duplicates.router,
        policies.router,
        campaigns.router,
        care.router,
        analytics.router,
        analytics.customers_router,
        recommendations.router,
        value.router,
        audit.router,
        audit.history_router,
        ops.router,
    ):
        app.include_router(router)
    return app
