"""Audit routes (role ``auditor``): verification of the tamper-evident history."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse

from api.http import deps
from api.http.auth import require
from api.http.responses import json_response
from api.http.schemas import AUTH, problems
from domain.errors import InvalidInput
from domain.values import check_aware
from infra.api_keys import Role
from infra.tamper_evidence import seals
from infra.tamper_evidence.export import export_lines
from projections import audit_history

router = APIRouter(prefix="/v1/audit", tags=["audit"], dependencies=[require(Role.AUDITOR)])


@router.get("/verify", responses=problems(*AUTH, 422))
def verify(
    request: Request,
    customer_id: Annotated[UUID | None, Query(description="only this customer's chain")] = None,
) -> dict[str, Any]:
    """Recompute hash links and check seals: ``ok``, or exactly which customer/version broke."""
    svc = deps.services(request)
    return seals.verify(
        svc.store_db,
        svc.settings.seal_key.encode(),
        svc.store.events_table,
        customer_id,
    )


From = Annotated[
    datetime | None, Query(alias="from", description="recorded at or after (RFC 3339)")
]
To = Annotated[datetime | None, Query(alias="to", description="recorded before (RFC 3339)")]


def _shown(request: Request, row: dict[str, Any]) -> dict[str, Any]:
    return row if getattr(request.state, "pii", False) else audit_history.blank(row)


def _page(request: Request, **filters: Any) -> Response:
    for name in ("start", "end"):
        if filters.get(name) is not None:
            check_aware(name, filters[name])
    deps.wait_for_position(request, ["audit"], filters.get("customer_id"))
    with deps.services(request).read_store.snapshot() as tx:
        try:
            items, next_cursor = audit_history.search(tx, **filters)
        except ValueError:
            raise InvalidInput("cursor", "is not a cursor this API issued") from None
    return json_response({"items": [_shown(request, i) for i in items], "next_cursor": next_cursor})


@router.get("/events", responses=problems(*AUTH, 422, 503))
def events(
    request: Request,
    actor: Annotated[str | None, Query(max_length=200)] = None,
    type: Annotated[str | None, Query(max_length=64)] = None,
    start: From = None,
    end: To = None,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    """Who changed what: audit rows by actor, event type and time range, in store order."""
    return _page(request, actor=actor, type=type, start=start, end=end, cursor=cursor, limit=limit)


EXPORT_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "JSONL: an export header, one line per event (envelope with hashes, and the "
        "stored form they cover), then every seal; verify offline with infra/tamper_evidence/offline_verify.py",
        "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
    }
}


@router.get(
    "/export", response_class=StreamingResponse, responses={**EXPORT_DOC, **problems(*AUTH, 422)}
)
def export(request: Request, start: From = None, end: To = None) -> StreamingResponse:
    """Events recorded in ``[from, to)`` as published (personal data sealed), with hashes and
    seals, for verification by a third party."""
    for value, name in ((start, "from"), (end, "to")):
        if value is not None:
            check_aware(name, value)
    svc = deps.services(request)
    lines = export_lines(svc.store, svc.store_db, start, end)
    return StreamingResponse(lines, media_type="application/x-ndjson")


history_router = APIRouter(prefix="/v1", tags=["audit"], dependencies=[require(Role.AUDITOR)])


@history_router.get("/customers/{customer_id}/history", responses=problems(*AUTH, 422, 503))
def history(
    customer_id: UUID,
    request: Request,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    """A customer's audit trail: every event with who, when, why and the field-level diff."""
    return _page(request, customer_id=customer_id, cursor=cursor, limit=limit)


@history_router.get(
    "/customers/{customer_id}/consents/history", responses=problems(*AUTH, 422, 503)
)
def consents_history(
    customer_id: UUID,
    request: Request,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    """Consent decisions in order: purpose, granted, source, actor, when (the proof of consent)."""
    deps.wait_for_position(request, ["audit"], customer_id)
    with deps.services(request).read_store.snapshot() as tx:
        try:
            items, next_cursor = audit_history.consent_history(tx, customer_id, cursor, limit)
        except ValueError:
            raise InvalidInput("cursor", "is not a cursor this API issued") from None
    return json_response({"items": items, "next_cursor": next_cursor})
