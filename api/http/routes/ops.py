"""Operations: liveness, readiness, projection positions and lag."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.http import deps
from api.http.auth import optional
from api.http.problems import RETRY_AFTER_SECONDS, problem
from api.http.schemas import problems
from consumers.status import pipeline_report
from infra.api_keys import ApiKey, Role
from infra.resilience import DATABASE, dependency, mark

router = APIRouter(tags=["ops"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


def projection_report(request: Request) -> dict[str, Any]:
    return pipeline_report(deps.services(request))


@router.get("/readyz", responses=problems(503), response_model=None)
def readyz(request: Request) -> dict[str, Any] | Response:
    """Ready when the event store and the read models answer: the API can serve, also while
    the read models catch up on a backlog (reads then show them as they are; X-Min-Position
    waits for a write). ``{"status": "ready", "head", "state": "catching_up" | "live",
    "dependencies": {"database": "up"}}``; else 503 ``/problems/not-ready`` with
    ``dependencies`` naming the one that is down, and ``Retry-After``. Each answer also sets
    the ``clientele_dependency_up`` gauge."""
    try:
        report = projection_report(request)
    except Exception as error:
        name = dependency(error)
        if name is None:
            return problem(503, "not-ready", f"{type(error).__name__}: {error}")
        mark(name, up=False)
        response = problem(
            503, "not-ready", f"the {name} is not answering", dependencies={name: "down"}
        )
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    mark(DATABASE, up=True)
    return {
        "status": "ready",
        "head": report["head"],
        "state": report["state"],
        "dependencies": {DATABASE: "up"},
    }


@router.get("/metrics", response_class=PlainTextResponse)
def metrics() -> Response:
    """Prometheus metrics: request latency, command outcomes, projection positions and lag,
    and ``clientele_dependency_up{dependency}`` (1 up, 0 down, as last seen)."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


# What a caller without a reader key is not shown of the oldest parked customer: who it is,
# and the reason (an error message may quote the data it could not apply).
IDENTIFYING = ("customer_id", "reason")


@router.get("/projections", responses=problems(401))
def projections(request: Request, key: Annotated[ApiKey | None, optional()]) -> dict[str, Any]:
    """Each read model's position in the store's notification log, its exact lag, whether it
    is catching up, and its parked customers; in full mode the relay's too.

    Open like the other ops routes: without a key the oldest parked customer is shown without
    its ``customer_id`` and ``reason``; a key with the reader role sees them. A bad key is 401.
    """
    report = projection_report(request)
    if key is not None and key.allows(Role.READER):
        return report
    for row in [report.get("relay"), *report["projections"]]:
        oldest = row["parked"]["oldest"] if row else None
        if oldest:
            for field in IDENTIFYING:
                oldest.pop(field, None)
    return report
