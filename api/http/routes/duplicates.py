"""Duplicate candidates: list them with their evidence (reader), merge or dismiss a pair
(admin). Candidates come from ``clientele duplicates scan`` (and registrations report theirs
at once); see :mod:`projections.duplicate_candidates`."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict

from api.http import deps
from api.http import schemas as s
from api.http.auth import require
from api.http.responses import json_response
from commands import messages as m
from commands.duplicates import DuplicateReviewService
from domain.duplicate_review import parse_pair_id
from domain.errors import DomainError, InvalidInput
from infra.api_keys import Role
from projections import duplicate_candidates as candidates

router = APIRouter(prefix="/v1", tags=["duplicates"])
READ_MODELS = ["duplicates"]
PairId = Annotated[
    str,
    Path(
        max_length=80,
        description="two customer ids, lower first, joined by '~' (as listed)",
        examples=["0b4e5c1a-2f3d-4e5f-8a9b-0c1d2e3f4a5b~7c1d2e3f-4a5b-4c6d-8e7f-8091a2b3c4d5"],
    ),
]


class PairNotListed(DomainError):
    code = "not-found"


class MergePairRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    survivor_id: UUID | None = None  # one of the pair; default: the first


def _listed(request: Request, pair_id: str) -> dict[str, Any]:
    parse_pair_id(pair_id)
    found = candidates.candidate(deps.services(request).read_store, pair_id)
    if found is None:
        raise PairNotListed(
            f"pair {pair_id} is not a listed candidate (never found, dismissed, or merged or "
            "erased since)",
            pair_id=pair_id,
        )
    return found


@router.get(
    "/duplicates", dependencies=[require(Role.READER)], responses=s.problems(*s.AUTH, 422, 503)
)
def list_duplicates(
    request: Request,
    min_score: Annotated[float, Query(ge=candidates.KEEP_PROBABILITY, le=1.0)] = 0.9,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    """Probable duplicate pairs, most probable first (paged): ``{pair_id, customer_ids,
    probability, weight, evidence: {field: {level, weight}}, fingerprint}``. ``min_score`` is
    a match probability (default 0.9, the detection threshold). Pairs with a merged or erased
    customer, and dismissed pairs whose records did not change, are never listed."""
    deps.wait_for_position(request, READ_MODELS)
    try:
        items, next_cursor = candidates.list_candidates(
            deps.services(request).read_store, min_score, limit, cursor
        )
    except ValueError:
        raise InvalidInput("cursor", "is not a cursor this API issued") from None
    return json_response({"items": items, "next_cursor": next_cursor})


@router.post(
    "/duplicates/{pair_id}/dismiss",
    dependencies=[require(Role.ADMIN)],
    responses=s.problems(*s.AUTH, *s.BODY, 404, 409),
)
def dismiss_pair(pair_id: PairId, request: Request) -> Response:
    """Decide the pair are two people (an event in the store): it is not listed again unless
    a scan finds it with either record changed. Answers ``{pair_id, dismissed, position}``."""
    listed = _listed(request, pair_id)
    svc = deps.services(request)
    reviews = DuplicateReviewService(
        svc.store,
        retries=svc.settings.command_retries,
        on_commit=svc.runner.wake if svc.runner is not None else None,
    )
    position = reviews.dismiss(
        pair_id, listed["fingerprint"], deps.context(request, deps.actor(request))
    )
    return json_response({"pair_id": pair_id, "dismissed": True, "position": position})


@router.post(
    "/duplicates/{pair_id}/merge",
    dependencies=[require(Role.ADMIN)],
    response_model=s.WriteResult,
    responses=s.problems(*s.AUTH, *s.BODY, 404, 409, 410),
)
def merge_pair(
    pair_id: PairId, request: Request, body: MergePairRequest | None = None
) -> s.WriteResult:
    """Merge the pair (the customer merge, reversible with ``POST …/unmerge``): the other
    customer is merged into ``survivor_id`` (default: the first of the pair)."""
    first, second = _listed(request, pair_id)["customer_ids"]
    survivor = str(body.survivor_id) if body and body.survivor_id else first
    if survivor not in (first, second):
        raise InvalidInput("survivor_id", "must be one of the pair")
    duplicate = second if survivor == first else first
    svc = deps.services(request)
    outcome = svc.commands.execute(
        m.MergeCustomers(customer_id=UUID(survivor), duplicate_id=UUID(duplicate)),
        deps.context(request, deps.actor(request)),
    )
    return s.WriteResult(
        customer_id=str(outcome.customer_id),
        version=outcome.version or 0,
        position=outcome.position,
    )
