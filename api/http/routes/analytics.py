"""Analytics routes (role ``reader``): lifecycle, RFM (paged, and per customer), churn,
satisfaction."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response

from api.http import deps
from api.http.auth import require
from api.http.responses import json_response, live_profile
from api.http.schemas import AUTH, problems
from bootstrap import Services
from domain.errors import InvalidInput
from domain.values import parse_timestamp
from infra.api_keys import Role
from projections import analytics, rfm, rfm_model
from projections.profiles import decode_cursor, encode_cursor

router = APIRouter(prefix="/v1/analytics", tags=["analytics"], dependencies=[require(Role.READER)])
customers_router = APIRouter(
    prefix="/v1/customers", tags=["analytics"], dependencies=[require(Role.READER)]
)
ERRORS = problems(*AUTH, 422, 503)


def _read(request: Request) -> Services:
    deps.wait_for_position(request, ["analytics"])
    return deps.services(request)


@router.get("/lifecycle", responses=ERRORS)
def lifecycle(request: Request) -> Response:
    """Live customers per lifecycle stage, and transitions per month."""
    with _read(request).read_store.snapshot() as tx:
        return json_response(analytics.lifecycle(tx))


Score = Annotated[int | None, Query(ge=1, le=5, description="only customers with this score")]
GROUPS = f"^({'|'.join(rfm.GROUP_NAMES)})$"
At = Annotated[
    datetime | None,
    Query(description="observation end, RFC 3339 (default: now; a cursor carries its own)"),
]
Currency = Annotated[
    str | None,
    Query(
        pattern="^[A-Z]{3}$",
        description="ISO 4217 code; may be left out while the customers bought in one currency",
    ),
]


@router.get("/rfm", responses=ERRORS)
def rfm_page(
    request: Request,
    at: At = None,
    currency: Currency = None,
    group: Annotated[str | None, Query(pattern=GROUPS, description="an RFM group")] = None,
    r: Score = None,
    f: Score = None,
    m: Score = None,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Response:
    """Recency/frequency/monetary per live customer in one currency, with quintile scores 1-5
    and named groups (definitions in the README), a page at a time by customer id.

    ``{observation_end, currency, population, currencies: {code: customers}, cuts: {r, f, m},
    items: [{customer_id, frequency, recency, T, monetary, r, f, m, group}], next_cursor}``.
    ``population`` and ``cuts`` are over every customer scored in the currency; filters only
    choose which of them are listed. ``next_cursor`` keeps the observation end and currency.
    422 (``currency``) when the customers bought in several currencies and none is named, or
    none bought in the one named; with no purchase at all, an empty page (currency null).
    """
    after, end, currency = _resume(cursor, at, currency)
    day = end.date()
    services = _read(request)
    with services.read_store.snapshot() as tx:
        found = rfm_model.rankings(services.read_store).populations(tx, day)
        population = _population(found, currency, day)
        filters = rfm_model.Filters(r=r, f=f, m=m, group=group)
        rows = (
            rfm_model.page(tx, population, day, after=after, limit=limit + 1, filters=filters)
            if population
            else []
        )
    more = len(rows) > limit
    rows = rows[:limit]
    chosen = population.currency if population else None
    return json_response(
        {
            "observation_end": end.isoformat(),
            "currency": chosen,
            "population": population.size if population else 0,
            "currencies": {code: p.size for code, p in found.items()},
            "cuts": population.cuts() if population else None,
            "items": rows,
            "next_cursor": (
                encode_cursor(end.isoformat(), chosen, rows[-1]["customer_id"]) if more else None
            ),
        }
    )


def _resume(
    cursor: str | None, at: datetime | None, currency: str | None
) -> tuple[str, datetime, str | None]:
    """(customer id to start after, observation end, currency) of a first or later page."""
    end = parse_timestamp("at", at) if at is not None else None
    if not cursor:  # absent or empty: the first page, as in the other lists
        return "", end or datetime.now(UTC), currency
    try:
        when, code, after = decode_cursor(cursor)
        kept = parse_timestamp("cursor", when)
        if not (isinstance(after, str) and (code is None or isinstance(code, str))):
            raise ValueError("malformed cursor")
    except (ValueError, TypeError, InvalidInput):
        raise InvalidInput("cursor", "is not a cursor this API issued") from None
    if (end is not None and end != kept) or (currency is not None and currency != code):
        raise InvalidInput("cursor", "belongs to another observation end or currency")
    return after, kept, code


def _population(
    found: rfm_model.Populations, currency: str | None, day: date
) -> rfm_model.Population | None:
    """The population asked for (see :func:`rfm_page` for the currency rule)."""
    known = ", ".join(found) or "none"
    if currency is not None:
        if currency not in found:
            raise _currency_problem(
                f"no live customer bought in {currency} up to {day} (currencies: {known})", found
            )
        return found[currency]
    if len(found) > 1:
        raise _currency_problem(f"customers bought in {known} up to {day}: name one", found)
    return next(iter(found.values()), None)


def _currency_problem(reason: str, found: rfm_model.Populations) -> InvalidInput:
    problem = InvalidInput("currency", reason)
    problem.details["currencies"] = {code: p.size for code, p in found.items()}
    return problem


@customers_router.get("/{customer_id}/rfm", responses=problems(*AUTH, 404, 410, 422, 503))
def customer_rfm(
    customer_id: UUID, request: Request, at: At = None, currency: Currency = None
) -> Response:
    """One live customer's RFM among everyone scored in the currency: ``{customer_id,
    observation_end, currency, population, frequency, recency, T, monetary, r, f, m,
    group}``. Without ``currency``, the one the customer bought in (422 naming ``currency``
    if several). Values are null when the customer made no purchase in the currency up to
    ``at`` (currency null when none at all). 404 unknown, 410 erased or merged, like the
    profile."""
    deps.wait_for_position(request, ["profiles", "analytics"], customer_id)
    end = parse_timestamp("at", at) if at is not None else datetime.now(UTC)
    day = end.date()
    services = deps.services(request)
    with services.read_store.snapshot() as tx:
        live_profile(tx, customer_id)
        if currency is None:
            bought = rfm_model.currencies_of(tx, str(customer_id), day)
            if len(bought) > 1:
                raise InvalidInput(
                    "currency", f"the customer bought in {', '.join(bought)}: name one"
                )
            currency = next(iter(bought), None)
        found = rfm_model.rankings(services.read_store).populations(tx, day)
        population = found.get(currency) if currency else None
        row = rfm_model.customer(tx, population, str(customer_id), day) if population else None
    values = row or dict.fromkeys(rfm_model.ITEM, None)
    return json_response(
        {
            **values,
            "customer_id": str(customer_id),
            "observation_end": end.isoformat(),
            "currency": currency,
            "population": population.size if population else 0,
        }
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
