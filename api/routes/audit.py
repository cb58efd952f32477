"""Audit routes (role ``auditor``): verification of the tamper-evident history."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, Request

from api import deps
from api.auth import require
from api.schemas import AUTH, problems
from infra.api_keys import Role
from projections import integrity

router = APIRouter(prefix="/v1/audit", tags=["audit"], dependencies=[require(Role.AUDITOR)])


@router.get("/verify", responses=problems(*AUTH, 422))
def verify(
    request: Request,
    customer_id: Annotated[UUID | None, Query(description="only this customer's chain")] = None,
) -> dict[str, Any]:
    """Recompute hash links and check seals: ``ok``, or exactly which customer/version broke."""
    svc = deps.services(request)
    return integrity.verify(
        request.app.state.audit_db,
        svc.settings.seal_key.encode(),
        svc.store.events_table,
        customer_id,
    )
