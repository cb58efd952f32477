"""Recommendations (role ``reader``): ``GET /v1/customers/{id}/recommendations``."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response

from api.http import deps
from api.http.auth import require
from api.http.responses import json_response, live_profile
from api.http.schemas import AUTH, problems
from domain.recommend import MAX_LIMIT
from infra.api_keys import Role
from projections import recommendations

router = APIRouter(
    prefix="/v1/customers", tags=["recommendations"], dependencies=[require(Role.READER)]
)


@router.get("/{customer_id}/recommendations", responses=problems(*AUTH, 404, 410, 422, 503))
def customer_recommendations(
    customer_id: UUID,
    request: Request,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 10,
) -> Response:
    """Items (``sku``) the customer has not bought, ranked by their cosine similarity to what
    they bought (co-purchases across customers; README, "Recommendations"):
    ``{customer_id, personalised, reason, owned: [sku], basis, items: [{sku, score, evidence:
    [{because, together, cosine}]}], model: {measure, customers}}``. When their items have no
    co-purchase evidence, the category fallback: ``basis: "category"``, the items most bought
    in the categories of theirs, ``evidence: [{category, customers, share}]``.

    Without the customer's ``profiling`` consent nothing personal is computed: 200 with
    ``personalised: false``, ``reason: "no-profiling-consent"`` and no items (likewise
    ``"no-items-bought"`` before a purchase with a ``sku``). 404 unknown, 410 erased or
    merged, like the profile."""
    deps.wait_for_position(request, ["profiles", "recommend"], customer_id)
    with deps.services(request).read_store.snapshot() as tx:
        live_profile(tx, customer_id)
        answer = recommendations.for_customer(tx, str(customer_id), limit)
    return json_response({"customer_id": str(customer_id), **answer.view()})
