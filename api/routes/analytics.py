"""Analytics routes (role ``reader``): lifecycle, RFM, churn, satisfaction."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response

from api import deps
from api.auth import require
from api.bootstrap import Services
from api.routes.reads import json_response
from api.schemas import AUTH, problems
from domain.errors import InvalidInput
from domain.values import check_aware
from infra.api_keys import Role
from projections import analytics

router = APIRouter(prefix="/v1/analytics", tags=["analytics"], dependencies=[require(Role.READER)])
ERRORS = problems(*AUTH, 422, 503)


def _read(request: Request) -> Services:
    deps.wait_for_position(request, ["analytics"])
    return deps.services(request)


@router.get("/lifecycle", responses=ERRORS)
def lifecycle(request: Request) -> Response:
    """Live customers per lifecycle stage, and transitions per month."""
    with _read(request).read_store.snapshot() as tx:
        return json_response(analytics.lifecycle(tx))


@router.get("/rfm", responses=ERRORS)
def rfm(
    request: Request,
    at: Annotated[datetime | None, Query(description="observation end (default: now)")] = None,
    currency: Annotated[str, Query(pattern="^[A-Z]{3}$")] = "EUR",
) -> Response:
    """Recency/frequency/monetary per customer, quintile scores and named groups."""
    end = check_aware("at", at) if at is not None else datetime.now(UTC)
    with _read(request).read_store.snapshot() as tx:
        rows = analytics.rfm(tx, end, currency)
    return json_response(
        {"observation_end": end.isoformat(), "currency": currency, "customers": rows}
    )


@router.get("/churn", responses=ERRORS)
def churn(
    request: Request,
    period: Literal["month", "quarter", "year"] = "month",
    start: Annotated[date | None, Query(alias="from")] = None,
    end: Annotated[date | None, Query(alias="to")] = None,
) -> Response:
    """Churn rate per period: churned during it ÷ active at its start."""
    today = datetime.now(UTC).date()
    first, last = start or today - timedelta(days=365), end or today + timedelta(days=1)
    if not first < last or (last - first).days > 3660:
        raise InvalidInput("to", "must be after from, within ten years")
    with _read(request).read_store.snapshot() as tx:
        return json_response(
            {"period": period, "periods": analytics.churn(tx, period, first, last)}
        )


@router.get("/satisfaction", responses=ERRORS)
def satisfaction(request: Request) -> Response:
    """NPS and CSAT over each customer's latest answer."""
    with _read(request).read_store.snapshot() as tx:
        return json_response(analytics.satisfaction(tx))
