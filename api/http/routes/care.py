"""The care agenda (reader): who is due for attention on a business day, and why
(docs/adr/0011-care-agenda.md)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response

from api.http import deps
from api.http.auth import require
from api.http.responses import json_response
from api.http.schemas import AUTH, problems
from domain.care import POLICY_NAME, CarePolicy, start_of
from domain.errors import InvalidInput
from infra.api_keys import Role
from projections import care

router = APIRouter(prefix="/v1", tags=["care"], dependencies=[require(Role.READER)])
FIRST_DAY, LAST_DAY = date(1900, 1, 1), date(9000, 12, 31)  # occasions look a year ahead
Reason = Literal["follow_up", "birthday", "anniversary", "complaint", "at_risk"]


@router.get("/care/agenda", responses=problems(*AUTH, 422, 503))
def care_agenda(
    request: Request,
    day: Annotated[
        date | None,
        Query(
            alias="date",
            description="the business day (YYYY-MM-DD, UTC) the agenda is for; default today",
        ),
    ] = None,
    owner: Annotated[
        str | None,
        Query(min_length=1, max_length=200, description="only customers this owner looks after"),
    ] = None,
    reason: Annotated[Reason | None, Query(description="only items for this reason")] = None,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    """Customers due for attention on ``date`` (paged, by customer id then reason): a
    follow-up after the interval their tier, stage or segment gets, a birthday or anniversary
    in the next days (marketing consent required), an open complaint, or having entered
    ``at_risk``; an item clears when a contact is recorded at or after its ``due_at``. Decided
    by the ``care`` policy version in force at the end of ``date`` (the default policy
    before the first). Shape: ``{date, policy_version, items: [{customer_id, reason, due_at,
    owner, lifecycle_stage, tier, detail}], next_cursor}``; ``detail.on`` (an occasion's date)
    needs the pii scope."""
    deps.wait_for_position(request, ["care", "segments"])
    services = deps.services(request)
    on = day or datetime.now(UTC).date()
    if not FIRST_DAY <= on <= LAST_DAY:
        raise InvalidInput("date", f"must be from {FIRST_DAY} to {LAST_DAY}")
    stored = services.policies.get(POLICY_NAME)
    end = start_of(on + timedelta(days=1)) - timedelta(microseconds=1)
    in_force = None if stored is None else stored.in_force(end)
    policy = CarePolicy.model_validate(in_force.document) if in_force is not None else CarePolicy()
    with services.read_store.snapshot() as tx:
        try:
            entries, next_cursor = care.agenda(
                tx, policy, on, owner=owner, reason=reason, cursor=cursor, limit=limit
            )
        except ValueError:
            raise InvalidInput("cursor", "is not a cursor this API issued") from None
    pii = getattr(request.state, "pii", False)
    views = [entry.view(policy) for entry in entries]
    if not pii:
        for view in views:
            view["detail"].pop("on", None)
    return json_response(
        {
            "date": on.isoformat(),
            "policy_version": None if in_force is None else in_force.version,
            "items": views,
            "next_cursor": next_cursor,
        }
    )
