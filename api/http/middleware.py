"""Edge middleware: body size, media type and header/query text checks, access logs, metrics.

The access log names the route template and our ids, never the path or the query (they may
hold personal data) nor any header (the API key).

``X-Correlation-Id`` is stored on every event a request causes, and query parameters reach the
read store's SQL: both are held to the text policy (``domain.values``) before any route runs.

Every request gets a problem document and an access-log line, also when a route fails: a
dependency that does not answer (:func:`infra.resilience.dependency`: the database during an
outage) is 503 ``/problems/unavailable`` with ``Retry-After``, anything else 500
``/problems/internal-error`` (logged with its traceback), never the server's plain text.
"""

from __future__ import annotations

import time
from uuid import uuid4

import structlog
from fastapi import FastAPI, Request, Response
from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.http.problems import internal_error, problem, unavailable
from domain.errors import InvalidInput
from domain.text_policy import Text, check_key, check_text
from infra.logging import exception_text
from infra.resilience import dependency, mark

log = structlog.get_logger("clientele.access")
REQUEST_SECONDS = Histogram(
    "clientele_http_request_seconds",
    "HTTP request latency by route template",
    ["method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
REQUESTS_REJECTED = Counter(
    "clientele_http_rejected_total", "Requests refused at the edge", ["reason"]
)
BODY_METHODS = {"POST", "PUT", "PATCH"}
# The path parameters the access log names: our own ids. The path itself is never logged (it
# may hold personal data, e.g. /customers/by-external/{system}/{external_id}).
LOGGED_PATH_PARAMS = ("customer_id", "segment_id")


def install(app: FastAPI, *, max_body_bytes: int) -> None:
    """Add the edge checks and the access log/metrics to ``app``."""
    app.add_middleware(Edge, max_body_bytes=max_body_bytes)


class Edge:
    """The edge as a plain ASGI middleware (no per-request task, stream or response wrapper,
    which Starlette's ``BaseHTTPMiddleware`` adds): the checks, the ids bound for the logs and
    sent back as ``X-Request-Id`` / ``X-Correlation-Id``, the problem document for a failed
    route, one access-log line and the latency histogram."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request = Request(scope)
        request_id = str(uuid4())
        refused = _refuse_text(request)
        correlation_id = (
            None if refused else request.headers.get("x-correlation-id")
        ) or request_id
        request.state.correlation_id = correlation_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id, correlation_id=correlation_id)
        ids = [
            (b"x-request-id", request_id.encode()),
            (b"x-correlation-id", correlation_id.encode()),
        ]
        status = 0

        async def send_with_ids(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), *ids]}
            await send(message)

        response = refused or _refuse(request, self.max_body_bytes)
        if response is None:
            try:
                await self.app(scope, receive, send_with_ids)
            except Exception as error:
                if status:  # the answer has begun: nothing else can be sent on it
                    raise
                response = _failed(error)
        if response is not None:
            await response(scope, receive, send_with_ids)
        route = scope.get("route")
        template = getattr(route, "path", "unmatched")
        elapsed = time.perf_counter() - started
        REQUEST_SECONDS.labels(request.method, template, str(status)).observe(elapsed)
        log.info(
            "http.request",
            method=request.method,
            route=template,
            **{k: v for k, v in request.path_params.items() if k in LOGGED_PATH_PARAMS},
            status=status,
            ms=round(elapsed * 1000, 2),
        )


def _failed(error: Exception) -> Response:
    """The problem document for an error no route handled."""
    name = dependency(error)
    if name is None:
        # the text, not exc_info: rendering is then bounded whatever renderer the process has
        log.error("http.unhandled", error=type(error).__name__, exception=exception_text(error))
        return internal_error()
    mark(name, up=False)
    log.warning("http.dependency_unavailable", dependency=name, error=repr(error))
    return unavailable(name)


def _refuse_text(request: Request) -> Response | None:
    """422 naming the header or query parameter that holds text the policy refuses."""
    try:
        correlation_id = request.headers.get("x-correlation-id")
        if correlation_id:
            check_key("X-Correlation-Id", correlation_id, ascii_only=True)
        for name, value in request.query_params.multi_items():
            check_text(name, name, Text.LINE)
            check_text(name, value, Text.LINE)
    except InvalidInput as error:
        REQUESTS_REJECTED.labels("text").inc()
        return problem(422, error.code, error.message, field=error.field)
    return None


def _refuse(request: Request, max_body_bytes: int) -> Response | None:
    if request.method not in BODY_METHODS:
        return None
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > max_body_bytes):
        REQUESTS_REJECTED.labels("too_large").inc()
        return problem(
            413, "payload-too-large", f"request bodies are limited to {max_body_bytes} bytes"
        )
    if length is None and "transfer-encoding" in request.headers:
        REQUESTS_REJECTED.labels("length_required").inc()
        return problem(411, "length-required", "send Content-Length (chunked bodies are refused)")
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    has_body = length not in (None, "0")
    if has_body and media != "application/json":
        REQUESTS_REJECTED.labels("media_type").inc()
        return problem(
            415, "unsupported-media-type", "send JSON with Content-Type: application/json"
        )
    return None
