"""Customer value (role ``reader``): ``GET /v1/analytics/value``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response

from api.http import deps
from api.http.auth import require
from api.http.responses import json_response
from api.http.schemas import AUTH, problems
from domain.errors import InvalidInput
from infra.api_keys import Role
from projections import customer_value
from projections.profiles import decode_cursor, encode_cursor

router = APIRouter(prefix="/v1/analytics", tags=["analytics"], dependencies=[require(Role.READER)])


@router.get("/value", responses=problems(*AUTH, 422, 503))
def value_page(
    request: Request,
    currency: Annotated[
        str | None,
        Query(pattern="^[A-Z]{3}$", description="ISO 4217; may be left out with one currency"),
    ] = None,
    by: Annotated[
        Literal["predicted", "historical"], Query(description="what ranks and cuts the deciles")
    ] = "predicted",
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Response:
    """Customer value in one currency (definitions in the README, "Customer value"):
    ``{currency, by, population, currencies: {code: customers}, totals: {historical,
    predicted}, cuts: [nine decile cuts], high_value_from, deciles: [{decile, customers,
    historical, predicted}], items: [{customer_id, historical, basis, predicted,
    expected_purchases, expected_spend, model_version, decile, high_value}], next_cursor}``.
    Items are the top customers by ``by`` (predicted 12-month value, or historical value),
    a page at a time; the cursor keeps the currency and ``by``. Predicted values need a fit
    of the churn model with a spend model for the currency (``clientele models fit``); before
    it, ``by=predicted`` lists nobody. 422 (``currency``) when customers hold value in several
    currencies and none is named, or none in the one named."""
    deps.wait_for_position(request, ["value"])
    after = None
    ranking: str = by
    if cursor:
        currency, ranking, after = _resume(cursor, currency, by)
    with deps.services(request).read_store.snapshot() as tx:
        known = customer_value.currencies(tx)
        chosen = _currency(known, currency)
        if chosen is None:
            empty: dict[str, Any] = {"currency": None, "by": ranking, "population": 0}
            return json_response({**empty, "currencies": known, "items": [], "next_cursor": None})
        found = customer_value.distribution(tx, chosen, ranking)
        rows = customer_value.top(tx, found, after=after, limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(chosen, ranking, *rows[-1][1]) if more else None
    return json_response(
        {
            **found.view(),
            "currencies": known,
            "items": [item for item, _ in rows],
            "next_cursor": next_cursor,
        }
    )


def _currency(known: dict[str, int], currency: str | None) -> str | None:
    names = ", ".join(known) or "none"
    if currency is not None:
        if currency not in known:
            raise InvalidInput("currency", f"no live customer holds value in {currency} ({names})")
        return currency
    if len(known) > 1:
        raise InvalidInput("currency", f"customers hold value in {names}: name one")
    return next(iter(known), None)


def _cents(value: object) -> bool:
    """A cursor's key: an integer a BIGINT column can be compared with."""
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**63


def _resume(cursor: str, currency: str | None, by: str) -> tuple[str, str, tuple[int, str]]:
    try:
        code, kept_by, cents, after = decode_cursor(cursor)
        if not (isinstance(code, str) and isinstance(after, str) and _cents(cents)):
            raise ValueError("malformed cursor")
        if kept_by not in customer_value.ORDERS:
            raise ValueError("malformed cursor")
    except (ValueError, TypeError):
        raise InvalidInput("cursor", "is not a cursor this API issued") from None
    if (currency is not None and currency != code) or by != kept_by:
        raise InvalidInput("cursor", "belongs to another currency or ranking")
    return code, kept_by, (cents, after)
