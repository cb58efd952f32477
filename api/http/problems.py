"""RFC 9457 problem documents: every error leaves the API as ``application/problem+json``.

``type`` is a stable URI per error kind (``/problems/<code>``); clients switch on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException

from domain.errors import DomainError, displayable

PROBLEM_MEDIA_TYPE = "application/problem+json"
STATUS_BY_CODE = {
    "validation": 422,
    "reserved-segment-id": 422,
    "not-found": 404,
    "gone-erased": 410,
    "gone-merged": 410,
    "invalid-transition": 409,
    "insufficient-points": 409,
    "purchase-conflict": 409,
    "email-taken": 409,
    "external-id-taken": 409,
    "external-id-conflict": 409,
    "customer-exists": 409,
    "campaign-exists": 409,
    "version-conflict": 409,
    "concurrent-write": 409,
    "idempotency-key-reused": 422,
    "limit-exceeded": 422,
    "event-too-large": 422,
    "not-caught-up": 503,
    "models-extra-missing": 501,
}
TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    410: "Gone",
    412: "Precondition failed",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    428: "Precondition required",
    429: "Too many requests",
    500: "Internal server error",
    501: "Not implemented",
    503: "Service unavailable",
}
RETRY_AFTER_SECONDS = 2  # a dependency's outage: how long a client waits before it retries


def problem(status: int, code: str, detail: str, **extra: Any) -> Response:
    """A problem+json response with a stable ``type``."""
    body = {
        "type": f"/problems/{code}",
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        **extra,
    }
    return Response(orjson.dumps(body), status_code=status, media_type=PROBLEM_MEDIA_TYPE)


def unavailable(dependency: str) -> Response:
    """503 ``/problems/unavailable`` with ``Retry-After``: ``dependency`` (``database``,
    ``kafka``) does not answer right now; the request did nothing and may be sent again."""
    response = problem(
        503,
        "unavailable",
        f"the {dependency} is not answering; nothing was done, retry later",
        dependency=dependency,
    )
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def internal_error() -> Response:
    """500 ``/problems/internal-error``: a defect, logged with its traceback (never shown)."""
    return problem(500, "internal-error", "an unexpected error occurred; it has been logged")


def domain_problem(error: DomainError, *, status: int | None = None) -> Response:
    details = {k: v for k, v in error.details.items() if k != "code"}
    return problem(
        status or STATUS_BY_CODE.get(error.code, 422), error.code, error.message, **details
    )


def _field(location: Sequence[Any]) -> str:
    """A pydantic error location as a field path (keys from the input made encodable)."""
    return displayable(".".join(str(part) for part in location if part != "body"))


def install(app: FastAPI) -> None:
    """Route every error the framework or the domain raises through :func:`problem`."""

    @app.exception_handler(DomainError)
    async def on_domain_error(_: Request, error: DomainError) -> Response:
        return domain_problem(error)

    @app.exception_handler(RequestValidationError)
    async def on_invalid_request(_: Request, error: RequestValidationError) -> Response:
        first = error.errors()[0] if error.errors() else {"loc": (), "msg": "invalid request"}
        where = _field(first["loc"]) or "body"
        errors = [{"field": _field(e["loc"]), "message": e["msg"]} for e in error.errors()]
        return problem(422, "validation", f"{where}: {first['msg']}", field=where, errors=errors)

    @app.exception_handler(HTTPException)
    async def on_http_error(_: Request, error: HTTPException) -> Response:
        codes = {400: "malformed-body", 404: "not-found", 405: "method-not-allowed"}
        code = codes.get(error.status_code, "http-error")
        return problem(error.status_code, code, str(error.detail))
