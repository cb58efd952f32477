"""Operations: liveness, readiness, projection positions and lag."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api import deps
from api.auth import require
from api.problems import problem
from api.schemas import problems
from api.status import pipeline_report
from infra.api_keys import Role

router = APIRouter(tags=["ops"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


def projection_report(request: Request) -> dict[str, Any]:
    return pipeline_report(deps.services(request))


@router.get("/readyz", responses=problems(503))
def readyz(request: Request) -> Response:
    """Ready when the event store and the read models answer."""
    try:
        report = projection_report(request)
    except Exception as error:
        return problem(503, "not-ready", f"{type(error).__name__}: {error}")
    return Response(
        content=f'{{"status":"ready","head":{report["head"]}}}', media_type="application/json"
    )


@router.get("/metrics", response_class=PlainTextResponse)
def metrics() -> Response:
    """Prometheus metrics: request latency, command outcomes, projection positions and lag."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


@router.get("/projections", dependencies=[require(Role.READER)], responses=problems(401, 403))
def projections(request: Request) -> dict[str, Any]:
    """Each read model's position in the store's notification log, its lag and its parked
    customers (count, oldest with its reason); in full mode the relay's too."""
    return projection_report(request)
