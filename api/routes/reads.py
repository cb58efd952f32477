"""Read routes: profiles from the read model; time travel folds the event store."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import orjson
from fastapi import APIRouter, Query, Request, Response

from api import deps
from api import schemas as s
from api.auth import privacy, require
from domain.errors import CustomerErased, CustomerMerged, CustomerNotFound, InvalidInput
from domain.values import check_aware, normalise_tag
from infra.api_keys import Role
from infra.envelope import Envelope
from projections import profile
from projections.profiles import final_survivor, get_profile, search_profiles
from projections.readstore import Tx

router = APIRouter(prefix="/v1", tags=["read"], dependencies=[require(Role.READER)])


def json_response(document: Any, etag: int | None = None) -> Response:
    response = Response(orjson.dumps(document), media_type="application/json")
    if etag is not None:
        response.headers["ETag"] = f'"{etag}"'
    return response


def _travel(
    request: Request, customer_id: UUID, as_of: datetime | None, version: int | None
) -> dict[str, Any]:
    """The profile as it was, folded from the store with the same code as the live one."""
    state = profile.empty(customer_id)
    for position, event in deps.services(request).store.history(customer_id):
        if (version is not None and event.originator_version > version) or (
            as_of is not None and event.timestamp > as_of
        ):
            break
        profile.apply(state, Envelope.from_event(event, position))
    if state["version"] == 0:
        raise CustomerNotFound(customer_id)
    return profile.render(state)


@router.get("/customers/{customer_id}", responses=s.CUSTOMER_READ)
def get_customer(
    customer_id: UUID,
    request: Request,
    as_of: Annotated[
        datetime | None, Query(description="time travel: what we knew at this instant (RFC 3339)")
    ] = None,
    version: Annotated[
        int | None, Query(ge=1, description="time travel: the profile at this version")
    ] = None,
) -> Response:
    """A customer's profile (ETag = version). Erased → 410; merged → 410 naming the final
    survivor of its merge chain."""
    if as_of is not None or version is not None:
        if as_of is not None:
            check_aware("as_of", as_of)
        document = _travel(request, customer_id, as_of, version)
        return json_response(privacy(request)(document), document["version"])
    deps.wait_for_position(request, ["profiles"], customer_id)
    with deps.services(request).read_store.transaction() as tx:
        live = live_profile(tx, customer_id)
    return json_response(privacy(request)(live), live["version"])


def live_profile(tx: Tx, customer_id: UUID) -> dict[str, Any]:
    """The customer's profile; :class:`CustomerNotFound` (404), :class:`CustomerErased` or
    :class:`CustomerMerged` naming the final survivor (410)."""
    live = get_profile(tx, customer_id)
    if live is None:
        raise CustomerNotFound(customer_id)
    if live["status"] == "merged":
        raise CustomerMerged(customer_id, final_survivor(tx, UUID(live["merged_into"])))
    if live["status"] == "erased":
        raise CustomerErased(customer_id)
    return live


@router.get("/customers", response_model=s.Page, responses=s.LIST_READ)
def list_customers(
    request: Request,
    q: Annotated[
        str | None, Query(max_length=200, description="prefix of name, email or phone")
    ] = None,
    tag: Annotated[
        str | None, Query(max_length=200, description="a tag (normalised like tags)")
    ] = None,
    stage: Annotated[str | None, Query(max_length=32)] = None,
    status: Annotated[str | None, Query(max_length=32)] = None,
    segment: Annotated[
        str | None, Query(max_length=64, description="members of this segment")
    ] = None,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Response:
    """Search profiles; stable order, opaque ``next_cursor`` for the next page."""
    deps.wait_for_position(request, ["profiles", "segments"] if segment else ["profiles"])
    with deps.services(request).read_store.transaction() as tx:
        try:
            items, next_cursor = search_profiles(
                tx,
                q=q,
                tag=normalise_tag(tag) if tag else None,
                stage=stage,
                status=status,
                cursor=cursor,
                limit=limit,
            )
        except ValueError:
            raise InvalidInput("cursor", "is not a cursor this API issued") from None
    shown = privacy(request)
    return json_response({"items": [shown(item) for item in items], "next_cursor": next_cursor})
