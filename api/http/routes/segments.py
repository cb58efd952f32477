"""Segment routes: definitions (admin) and members, live or as of a past instant (reader)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from api.http import deps
from api.http.auth import require
from api.http.responses import json_response
from api.http.schemas import AUTH, problems
from domain.errors import DomainError, InvalidInput
from infra.api_keys import Role
from projections import segment_queries

router = APIRouter(prefix="/v1", tags=["segments"])


class SegmentNotFound(DomainError):
    code = "not-found"


SegmentId = Annotated[
    str,
    Path(
        pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$",
        examples=["vip-recent"],
        description="`campaign-<uuid>` ids are the inline-rule audiences of campaigns: they "
        "can be read, never defined (422 `/problems/reserved-segment-id`)",
    ),
]


class SegmentRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "Recent big spenders who accept email",
                    "purpose": "email_marketing",
                    "rule": {
                        "all": [
                            {"field": "purchases.count", "op": "gte", "value": 2, "within": "90d"},
                            {"field": "purchases.total.EUR", "op": "gte", "value": "500"},
                        ]
                    },
                }
            ]
        },
    )
    name: str = Field(max_length=200)
    rule: dict[str, Any]
    purpose: str | None = Field(default=None, max_length=64)


@router.get("/segments", dependencies=[require(Role.READER)], responses=problems(*AUTH, 422, 503))
def list_segments(request: Request) -> Response:
    """Every segment definition."""
    deps.wait_for_position(request, ["segments"])
    with deps.services(request).read_store.snapshot() as tx:
        items = segment_queries.list_definitions(tx)
    return json_response({"items": items, "next_cursor": None})


@router.put(
    "/segments/{segment_id}",
    dependencies=[require(Role.ADMIN)],
    responses=problems(*AUTH, 400, 409, 411, 413, 415, 422),
)
def put_segment(segment_id: SegmentId, body: SegmentRequest, request: Request) -> Response:
    """Create or change a segment (an event in the store). Membership is then decided for every
    customer by the segments read model: read it with ``X-Min-Position`` set to the
    ``position`` answered here. An unchanged definition records nothing. A ``campaign-<uuid>``
    id (a campaign's inline-rule audience, defined by its launch) is refused: 422
    ``/problems/reserved-segment-id`` naming ``segment_id``."""
    defined = deps.services(request).segments.define(
        segment_id,
        body.name,
        body.rule,
        body.purpose,
        deps.context(request, deps.actor(request)),
    )
    return json_response(defined.view(), defined.version)


@router.post(
    "/segments/{segment_id}",
    dependencies=[require(Role.ADMIN)],
    responses=problems(*AUTH, 400, 409, 411, 413, 415, 422),
)
def post_segment(segment_id: SegmentId, body: SegmentRequest, request: Request) -> Response:
    """Same as PUT (create or change), for clients that only POST."""
    return put_segment(segment_id, body, request)


@router.get(
    "/segments/{segment_id}/members",
    dependencies=[require(Role.READER)],
    responses=problems(*AUTH, 404, 422, 503),
)
def segment_members(
    segment_id: SegmentId,
    request: Request,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    as_of: Annotated[
        datetime | None, Query(description="membership at this instant (RFC 3339)")
    ] = None,
) -> Response:
    """Customer ids in the segment (paged), now or as of a past instant."""
    deps.wait_for_position(request, ["segments"])
    with deps.services(request).read_store.snapshot() as tx:
        if segment_queries.get_definition(tx, segment_id) is None:
            raise SegmentNotFound(f"no segment {segment_id!r}", segment_id=segment_id)
        try:
            items, next_cursor = segment_queries.members(
                tx, segment_id, cursor=cursor, limit=limit, as_of=as_of
            )
        except ValueError:
            raise InvalidInput("cursor", "is not a cursor this API issued") from None
    return json_response({"items": items, "next_cursor": next_cursor})
